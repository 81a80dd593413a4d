-- Named queries of the PostgreSQL store's retention role. Parameters are positional.

-- name: purge_bodies
WITH chosen AS (
    SELECT m.id FROM messages m
    WHERE m.purged_at IS NULL AND m.created_at < $1
      AND NOT EXISTS (
          SELECT 1 FROM recipients r
          WHERE r.message_id = m.id AND (r.state = 'queued' OR r.updated_at >= $1)
      )
    ORDER BY m.created_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE messages m SET body = '\x'::bytea, purged_at = $3 FROM chosen WHERE m.id = chosen.id;

-- name: messages_to_purge
SELECT m.id FROM messages m
WHERE m.created_at < $1
  AND NOT EXISTS (
      SELECT 1 FROM recipients r
      WHERE r.message_id = m.id AND (r.state = 'queued' OR r.updated_at >= $1)
  )
ORDER BY m.created_at
LIMIT $2
FOR UPDATE SKIP LOCKED;

-- name: purge_recipients
DELETE FROM recipients WHERE message_id = ANY($1::text[]);

-- name: purge_messages
DELETE FROM messages WHERE id = ANY($1::text[]);

-- name: event_partitions
SELECT c.relname, pg_get_expr(c.relpartbound, c.oid)
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'events'::regclass;

-- name: default_has_events
SELECT EXISTS (SELECT 1 FROM events_default WHERE at >= $1 AND at < $2);

-- name: purge_default_events
DELETE FROM events_default WHERE ctid IN (
    SELECT ctid FROM events_default WHERE at < $1 LIMIT $2
);

-- name: purge_webhook_deliveries
DELETE FROM webhook_deliveries WHERE id IN (
    SELECT id FROM webhook_deliveries WHERE updated_at < $1 ORDER BY updated_at LIMIT $2
);

-- name: purge_inbound
DELETE FROM inbound WHERE id IN (
    SELECT id FROM inbound WHERE state <> 'pending' AND received_at < $1
    ORDER BY received_at LIMIT $2
);

-- name: size_on_disk
SELECT pg_database_size(current_database());
