-- Custom field mappings: per tenant and source, a declarative mapping (JSON paths to alert
-- fields, a severity table) for sources without a built-in normalizer. Versioned: every save
-- is a new version; the newest applies. Each alert records the mapping version it came from.
CREATE TABLE source_mappings (
    tenant_id   text NOT NULL REFERENCES tenants (id),
    source      text NOT NULL,
    version     integer NOT NULL,
    mapping     jsonb NOT NULL,
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, source, version)
);
ALTER TABLE source_mappings ENABLE ROW LEVEL SECURITY;
ALTER TABLE source_mappings FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_scope ON source_mappings USING (tocsin_scope_allows(tenant_id))
    WITH CHECK (tocsin_scope_allows(tenant_id));

ALTER TABLE alerts ADD COLUMN mapping text;
