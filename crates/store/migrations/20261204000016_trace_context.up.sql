-- Distributed tracing (issue 7): the trace an alert arrived in, the W3C `traceparent` a run
-- continues (its dispatches carry it in NATS headers), and the span of each journaled step.
ALTER TABLE alerts ADD COLUMN trace_id text;
ALTER TABLE runs ADD COLUMN traceparent text;
ALTER TABLE run_steps ADD COLUMN trace_id text, ADD COLUMN span_id text;
-- A run handed back for a delayed retry ("why hasn't it started?": delayed by backoff until
-- retry_at because retry_reason). Cleared when the run is claimed again.
ALTER TABLE runs ADD COLUMN retry_at timestamptz, ADD COLUMN retry_reason text;
