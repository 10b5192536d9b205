-- Per-tenant secrets for playbooks (`run.secrets["name"]`), encrypted with the deployment's
-- master key (XChaCha20-Poly1305, the tenant and name bound as associated data).
CREATE TABLE secrets (
    tenant_id   text NOT NULL REFERENCES tenants (id),
    name        text NOT NULL CHECK (name ~ '^[A-Za-z_][A-Za-z0-9_.-]{0,127}$'),
    nonce       bytea NOT NULL,
    ciphertext  bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, name)
);
