-- Roles on keys (admin, analyst, viewer, ingest; operator keys span tenants), expiry, and
-- the audit log of every mutation made through the API or the admin verbs.
ALTER TABLE api_keys ADD COLUMN role text;
UPDATE api_keys SET role = CASE kind WHEN 'ingest' THEN 'ingest' ELSE 'admin' END;
ALTER TABLE api_keys
    ALTER COLUMN role SET NOT NULL,
    ADD CONSTRAINT api_keys_role_check
        CHECK (role IN ('admin', 'analyst', 'viewer', 'ingest', 'operator')),
    ADD CONSTRAINT api_keys_role_kind_check
        CHECK ((role = 'ingest') = (kind = 'ingest')),
    ALTER COLUMN tenant_id DROP NOT NULL,
    ADD CONSTRAINT api_keys_operator_tenant_check
        CHECK ((role = 'operator') = (tenant_id IS NULL)),
    ADD COLUMN expires_at timestamptz,
    ADD COLUMN created_by text NOT NULL DEFAULT 'unknown';

CREATE TABLE audit_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- NULL for actions outside any tenant (operator keys, tenant creation).
    tenant_id   text REFERENCES tenants (id),
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,
    action      text NOT NULL,
    target      text NOT NULL,
    before      jsonb,
    after       jsonb
);
CREATE INDEX audit_log_tenant ON audit_log (tenant_id, id);
