-- Why each playbook matched an alert or not, recorded by the scheduler when it first sees
-- the alert (GET /v1/alerts/{id} shows it: "why hasn't it started?").
ALTER TABLE alerts ADD COLUMN match_report jsonb;
