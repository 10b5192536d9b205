-- The dispatcher's reaper scans, once a second: without these, each is a scan of every run
-- ever recorded (runs_tenant_status leads with the tenant), which a large or deeply queued
-- runs table makes slow. Each is partial, so it holds only the runs in that state. Built
-- without CONCURRENTLY (migrations run in a transaction): on a large runs table, writes to it
-- wait while they build; plan the upgrade for a quiet moment.
CREATE INDEX runs_waiting_approval ON runs (id) WHERE status = 'waiting_approval';
CREATE INDEX runs_published ON runs (dispatched_at) WHERE status = 'queued' AND dispatched_at IS NOT NULL;
CREATE INDEX runs_leased ON runs (lease_until) WHERE status = 'running';
