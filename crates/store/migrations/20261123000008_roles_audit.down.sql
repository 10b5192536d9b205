DROP TABLE audit_log;
DELETE FROM api_keys WHERE role = 'operator';
ALTER TABLE api_keys
    DROP CONSTRAINT api_keys_operator_tenant_check,
    DROP CONSTRAINT api_keys_role_kind_check,
    DROP CONSTRAINT api_keys_role_check,
    DROP COLUMN created_by,
    DROP COLUMN expires_at,
    DROP COLUMN role,
    ALTER COLUMN tenant_id SET NOT NULL;
