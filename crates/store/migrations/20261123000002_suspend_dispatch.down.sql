ALTER TABLE playbooks DROP COLUMN tenants;
ALTER TABLE playbooks DROP COLUMN enabled;
DROP TABLE dead_letters;
DROP TABLE approvals;
ALTER TABLE cases DROP COLUMN tags;
ALTER TABLE cases DROP COLUMN determination;
ALTER TABLE run_steps DROP CONSTRAINT run_steps_state_check;
ALTER TABLE run_steps ADD CONSTRAINT run_steps_state_check
    CHECK (state IN ('intent', 'succeeded', 'failed', 'uncertain'));
DROP INDEX runs_sleeping;
DROP INDEX runs_outbox;
ALTER TABLE runs DROP COLUMN cancel_requested_by;
ALTER TABLE runs DROP COLUMN resume_at;
ALTER TABLE runs DROP COLUMN dispatched_at;
ALTER TABLE runs DROP COLUMN input;
ALTER TABLE runs DROP COLUMN trigger;
ALTER TABLE runs DROP CONSTRAINT runs_status_check;
ALTER TABLE runs ADD CONSTRAINT runs_status_check CHECK (status IN (
    'queued', 'running', 'succeeded', 'failed', 'skipped', 'needs_review'));
