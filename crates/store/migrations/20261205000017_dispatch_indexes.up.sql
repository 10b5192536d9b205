-- The dispatcher's reaper scans, once a second: without these, each is a scan of every run
-- ever recorded (runs_tenant_status leads with the tenant), which a large or deeply queued
-- runs table makes slow. Each is partial, so it holds only the runs in that state.
CREATE INDEX runs_waiting_approval ON runs (id) WHERE status = 'waiting_approval';
CREATE INDEX runs_published ON runs (dispatched_at) WHERE status = 'queued' AND dispatched_at IS NOT NULL;
CREATE INDEX runs_leased ON runs (lease_until) WHERE status = 'running';
