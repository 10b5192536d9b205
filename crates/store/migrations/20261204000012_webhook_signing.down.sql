DROP TABLE webhook_receipts;
DROP TABLE webhook_settings;
DROP TABLE webhook_secrets;
