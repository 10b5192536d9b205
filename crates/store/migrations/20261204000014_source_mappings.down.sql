ALTER TABLE alerts DROP COLUMN mapping;
DROP TABLE source_mappings;
