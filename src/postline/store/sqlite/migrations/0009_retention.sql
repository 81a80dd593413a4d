-- Version 9: retention. A message's body is deleted some days after its last recipient
-- became final (purged_at says when); messages, events, webhook delivery logs and inbound
-- reports later. The indexes let the cleaner find the oldest rows without a scan.
ALTER TABLE messages ADD COLUMN purged_at REAL;
CREATE INDEX messages_created ON messages (created_at);
CREATE INDEX messages_unpurged ON messages (created_at) WHERE purged_at IS NULL;
CREATE INDEX webhook_deliveries_age ON webhook_deliveries (updated_at);
