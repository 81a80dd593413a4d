-- Named queries of the SQLite store's retention role.

-- name: bodies_to_purge
SELECT m.id FROM messages m
WHERE m.purged_at IS NULL AND m.created_at < :before
  AND NOT EXISTS (
      SELECT 1 FROM recipients r
      WHERE r.message_id = m.id AND (r.state = 'queued' OR r.updated_at >= :before)
  )
ORDER BY m.created_at
LIMIT :limit;

-- name: purge_bodies
UPDATE messages SET body = x'', purged_at = :now
WHERE id IN (SELECT value FROM json_each(:ids));

-- name: messages_to_purge
SELECT m.id FROM messages m
WHERE m.created_at < :before
  AND NOT EXISTS (
      SELECT 1 FROM recipients r
      WHERE r.message_id = m.id AND (r.state = 'queued' OR r.updated_at >= :before)
  )
ORDER BY m.created_at
LIMIT :limit;

-- name: purge_recipients
DELETE FROM recipients WHERE message_id IN (SELECT value FROM json_each(:ids));

-- name: purge_messages
DELETE FROM messages WHERE id IN (SELECT value FROM json_each(:ids));

-- name: purge_events
-- The oldest events by id (ids follow time): at most :limit rows are looked at.
DELETE FROM events WHERE id IN (
    SELECT id FROM (SELECT id, at FROM events ORDER BY id LIMIT :limit) WHERE at < :before
);

-- name: purge_webhook_deliveries
DELETE FROM webhook_deliveries WHERE id IN (
    SELECT id FROM webhook_deliveries WHERE updated_at < :before ORDER BY updated_at
    LIMIT :limit
);

-- name: purge_inbound
DELETE FROM inbound WHERE rowid IN (
    SELECT rowid FROM (SELECT rowid, state, received_at FROM inbound ORDER BY rowid LIMIT :limit)
    WHERE state != 'pending' AND received_at < :before
);
