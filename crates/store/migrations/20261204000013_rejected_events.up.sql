-- Events published to the INGEST stream that could not become alerts (unknown tenant or
-- source, malformed, invalid): kept with the reason, visible to the tenant through the API,
-- instead of looping through redeliveries. tenant_id is NULL when the subject named no
-- known tenant (then only the platform sees it).
CREATE TABLE rejected_events (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id    text REFERENCES tenants (id),
    subject      text NOT NULL,
    source       text NOT NULL,
    reason       text NOT NULL,
    -- The first 64 KiB of the payload.
    payload      bytea NOT NULL,
    payload_size integer NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX rejected_events_tenant ON rejected_events (tenant_id, id);
ALTER TABLE rejected_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE rejected_events FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_scope ON rejected_events USING (tocsin_scope_allows(tenant_id))
    WITH CHECK (tocsin_scope_allows(tenant_id));
