-- Envelope encryption of secrets: each tenant gets a random 256-bit data key, stored only
-- wrapped (AES-256-GCM) by the deployment's master key, which never reaches the database.
-- Secret values are sealed with AES-256-GCM under their tenant's data key (scheme 2).
-- Scheme 1 marks values sealed before this migration (XChaCha20-Poly1305 directly under the
-- master key); they still open, and are re-sealed under the data key when set again.
CREATE TABLE tenant_keys (
    tenant_id   text PRIMARY KEY REFERENCES tenants (id),
    nonce       bytea NOT NULL,
    wrapped     bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE tenant_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_scope ON tenant_keys USING (tocsin_scope_allows(tenant_id))
    WITH CHECK (tocsin_scope_allows(tenant_id));

ALTER TABLE secrets ADD COLUMN scheme smallint NOT NULL DEFAULT 1 CHECK (scheme IN (1, 2));
ALTER TABLE secrets ALTER COLUMN scheme SET DEFAULT 2;
