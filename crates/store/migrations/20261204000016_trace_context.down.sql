ALTER TABLE runs DROP COLUMN retry_at, DROP COLUMN retry_reason;
ALTER TABLE run_steps DROP COLUMN trace_id, DROP COLUMN span_id;
ALTER TABLE runs DROP COLUMN traceparent;
ALTER TABLE alerts DROP COLUMN trace_id;
