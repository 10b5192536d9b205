-- Durable suspension (approvals, sleep), the dispatch outbox, cancellation and dead letters.

ALTER TABLE runs DROP CONSTRAINT runs_status_check;
ALTER TABLE runs ADD CONSTRAINT runs_status_check CHECK (status IN (
    'queued', 'running', 'succeeded', 'failed', 'skipped', 'needs_review',
    'waiting_approval', 'sleeping', 'cancelled', 'timed_out', 'dead_lettered'));
-- How the run was started: alert | manual | schedule.
ALTER TABLE runs ADD COLUMN trigger text NOT NULL DEFAULT 'alert';
-- Input of a manual run.
ALTER TABLE runs ADD COLUMN input jsonb;
-- When the current dispatch was published; NULL = waiting to be published (outbox).
ALTER TABLE runs ADD COLUMN dispatched_at timestamptz;
-- When a sleeping run wakes up.
ALTER TABLE runs ADD COLUMN resume_at timestamptz;
-- Who asked to cancel the run while it ran.
ALTER TABLE runs ADD COLUMN cancel_requested_by text;
CREATE INDEX runs_outbox ON runs (queued_at) WHERE status = 'queued' AND dispatched_at IS NULL;
CREATE INDEX runs_sleeping ON runs (resume_at) WHERE status = 'sleeping';

ALTER TABLE run_steps DROP CONSTRAINT run_steps_state_check;
ALTER TABLE run_steps ADD CONSTRAINT run_steps_state_check
    CHECK (state IN ('intent', 'succeeded', 'failed', 'uncertain', 'waiting'));

-- Case fields playbooks and analysts set.
ALTER TABLE cases ADD COLUMN determination text
    CHECK (determination IN ('true_positive', 'false_positive', 'benign'));
ALTER TABLE cases ADD COLUMN tags text[] NOT NULL DEFAULT '{}';

CREATE TABLE approvals (
    id                uuid PRIMARY KEY,
    tenant_id         text NOT NULL REFERENCES tenants (id),
    run_id            uuid NOT NULL REFERENCES runs (id),
    seq               integer NOT NULL,
    title             text NOT NULL,
    details           jsonb,
    approvers         text[] NOT NULL DEFAULT '{}',
    status            text NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'approved', 'denied', 'timed_out')),
    default_decision  text NOT NULL CHECK (default_decision IN ('approve', 'deny')),
    expires_at        timestamptz NOT NULL,
    decided_by        text,
    decided_at        timestamptz,
    comment           text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (run_id, seq)
);
CREATE INDEX approvals_pending ON approvals (tenant_id, created_at) WHERE status = 'pending';
CREATE INDEX approvals_expiry ON approvals (expires_at) WHERE status = 'pending';

-- Messages that could not be processed, kept instead of dropped.
CREATE TABLE dead_letters (
    id          bigserial PRIMARY KEY,
    tenant_id   text,
    stream      text NOT NULL,
    subject     text NOT NULL,
    payload     bytea NOT NULL,
    reason      text NOT NULL,
    deliveries  integer NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Playbook metadata added by the SDK: whether it starts runs, which tenants it applies to.
ALTER TABLE playbooks ADD COLUMN enabled boolean NOT NULL DEFAULT true;
ALTER TABLE playbooks ADD COLUMN tenants jsonb NOT NULL DEFAULT '"*"';
