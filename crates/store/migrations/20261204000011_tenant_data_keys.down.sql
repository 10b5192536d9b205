-- Values sealed under data keys (scheme 2) cannot be opened without them.
DELETE FROM secrets WHERE scheme = 2;
ALTER TABLE secrets DROP COLUMN scheme;
DROP TABLE tenant_keys;
