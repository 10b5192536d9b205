-- Signed webhooks (Standard Webhooks): per-tenant signing secrets, sealed like playbook
-- secrets (AES-256-GCM under the tenant's data key); whether the tenant requires signatures;
-- and the message ids accepted recently, so a replayed message is refused.
CREATE TABLE webhook_secrets (
    id          uuid PRIMARY KEY,
    tenant_id   text NOT NULL REFERENCES tenants (id),
    nonce       bytea NOT NULL,
    sealed      bytea NOT NULL,
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_secrets_tenant ON webhook_secrets (tenant_id);

CREATE TABLE webhook_settings (
    tenant_id           text PRIMARY KEY REFERENCES tenants (id),
    require_signatures  boolean NOT NULL DEFAULT false,
    updated_by          text NOT NULL,
    updated_at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE webhook_receipts (
    tenant_id    text NOT NULL REFERENCES tenants (id),
    message_id   text NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, message_id)
);
CREATE INDEX webhook_receipts_age ON webhook_receipts (received_at);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['webhook_secrets', 'webhook_settings', 'webhook_receipts'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_scope ON %I USING (tocsin_scope_allows(tenant_id))
             WITH CHECK (tocsin_scope_allows(tenant_id))', t);
    END LOOP;
END
$$;
