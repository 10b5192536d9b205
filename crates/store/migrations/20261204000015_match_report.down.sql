ALTER TABLE alerts DROP COLUMN match_report;
