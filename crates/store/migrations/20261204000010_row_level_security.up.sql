-- Row-level security: the second, database-enforced line of tenant isolation.
--
-- The services' connections act as tocsin_app (`SET ROLE` at connect): it owns no table,
-- has no BYPASSRLS and holds only data privileges. Every statement of the store runs in a
-- transaction that first sets `tocsin.tenant` transaction-locally: a tenant id (that
-- tenant's rows), or '*' (the platform's cross-tenant machinery). Unset, nothing is visible.
-- Tenant ids are [a-z0-9-], so '*' is never one.

DO $$
BEGIN
    CREATE ROLE tocsin_app NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
EXCEPTION
    -- Roles are cluster-wide: another database of the cluster (or a concurrent migration)
    -- may have created it.
    WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;

-- The migrating role must be able to SET ROLE to it (superusers always can).
DO $$
BEGIN
    IF NOT pg_has_role(current_user, 'tocsin_app', 'MEMBER') THEN
        EXECUTE format('GRANT tocsin_app TO %I', current_user);
    END IF;
END
$$;

GRANT USAGE ON SCHEMA public TO tocsin_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO tocsin_app;
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO tocsin_app;
REVOKE ALL ON _sqlx_migrations FROM tocsin_app;
-- Tables of later migrations get the same privileges (and must add their policy; a test
-- checks every table with a tenant_id has RLS enabled and forced).
ALTER DEFAULT PRIVILEGES IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO tocsin_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA public
    GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO tocsin_app;

-- Whether the current transaction's scope covers a row of `row_tenant`.
CREATE FUNCTION tocsin_scope_allows(row_tenant text) RETURNS boolean
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$
        SELECT CASE coalesce(current_setting('tocsin.tenant', true), '')
            WHEN '' THEN false
            WHEN '*' THEN true
            ELSE row_tenant IS NOT DISTINCT FROM current_setting('tocsin.tenant', true)
        END
    $$;

DO $$
DECLARE
    t text;
BEGIN
    FOR t IN
        SELECT c.relname
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
        WHERE n.nspname = 'public' AND c.relkind = 'r'
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_scope ON %I USING (tocsin_scope_allows(tenant_id))
             WITH CHECK (tocsin_scope_allows(tenant_id))', t);
    END LOOP;
END
$$;

ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_scope ON tenants USING (tocsin_scope_allows(id))
    WITH CHECK (tocsin_scope_allows(id));
