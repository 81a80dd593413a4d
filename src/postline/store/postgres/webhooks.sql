-- Named queries of the PostgreSQL store's webhook role. Parameters are positional.

-- name: create_webhook
INSERT INTO webhooks (id, tenant_id, url, events, description, batch_size, secret, old_secret,
    old_secret_until, status, disabled_reason, created_at, updated_at, cursor, batch_id,
    batch_last, batch_started, attempts, next_attempt_at, lease_owner, lease_until)
VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
    $18, $19, $20, $21);

-- name: get_webhook
SELECT * FROM webhooks WHERE id = $1 AND ($2::text IS NULL OR tenant_id = $2);

-- name: list_webhooks
SELECT * FROM webhooks WHERE $1::text IS NULL OR tenant_id = $1 ORDER BY created_at, id;

-- name: delete_webhook
DELETE FROM webhooks WHERE id = $1 AND tenant_id = $2;

-- name: delete_webhook_deliveries
DELETE FROM webhook_deliveries WHERE webhook_id = $1;

-- name: claim_webhooks
UPDATE webhooks SET lease_owner = $1, lease_until = $3
WHERE id IN (
    SELECT id FROM webhooks
    WHERE status = 'active' AND next_attempt_at <= $2
      AND (lease_owner IS NULL OR lease_until < $2 OR lease_owner = $1)
    ORDER BY next_attempt_at
    LIMIT $4
    FOR UPDATE SKIP LOCKED
)
RETURNING *;

-- name: renew_webhooks
UPDATE webhooks SET lease_until = $3
WHERE id = ANY($2::text[]) AND lease_owner = $1 AND status = 'active'
RETURNING id;

-- name: release_webhooks
UPDATE webhooks SET lease_owner = NULL, lease_until = NULL
WHERE lease_owner = $1 AND ($2::text[] IS NULL OR id = ANY($2::text[]));

-- name: begin_webhook_batch
UPDATE webhooks SET batch_id = $3, batch_last = $4, batch_started = $5, attempts = 0
WHERE id = $1 AND lease_owner = $2;

-- name: finish_webhook_batch
-- Applies to the batch that follows the cursor it was chosen from; a batch remembered
-- beforehand (begin_webhook_batch) must be this one.
UPDATE webhooks SET
    cursor = CASE WHEN $3 THEN $4 ELSE cursor END,
    batch_id = CASE WHEN $3 THEN NULL ELSE $9 END,
    batch_last = CASE WHEN $3 THEN NULL ELSE $4 END,
    batch_started = CASE WHEN $3 THEN NULL ELSE coalesce(batch_started, $11) END,
    attempts = CASE WHEN $3 THEN 0 ELSE $5 END,
    next_attempt_at = $6,
    status = CASE WHEN $7::text IS NULL THEN status ELSE 'disabled' END,
    disabled_reason = COALESCE($7::text, disabled_reason),
    lease_owner = CASE WHEN $7::text IS NULL THEN lease_owner ELSE NULL END,
    lease_until = CASE WHEN $7::text IS NULL THEN lease_until ELSE NULL END,
    updated_at = CASE WHEN $7::text IS NULL THEN updated_at ELSE $8 END
WHERE id = $1 AND lease_owner = $2 AND cursor = $10 AND (batch_id IS NULL OR batch_id = $9);

-- name: webhook_held
SELECT 1 FROM webhooks WHERE id = $1 AND lease_owner = $2;

-- name: log_webhook_delivery
INSERT INTO webhook_deliveries (id, webhook_id, tenant_id, status, first_event, last_event,
    count, attempts, created_at, updated_at, response_code, latency_ms, error)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
ON CONFLICT (id) DO UPDATE SET status = excluded.status, attempts = excluded.attempts,
    updated_at = excluded.updated_at, response_code = excluded.response_code,
    latency_ms = excluded.latency_ms, error = excluded.error;

-- name: webhook_deliveries
SELECT * FROM webhook_deliveries
WHERE webhook_id = $2 AND tenant_id = $1
  AND ($3::text IS NULL OR status = $3)
  AND ($4::double precision IS NULL OR updated_at < $4)
ORDER BY updated_at DESC
LIMIT $5;

-- name: webhook_delivery_counts
SELECT status, count(*) FROM webhook_deliveries WHERE webhook_id = $1 GROUP BY status;

-- name: message_labels
SELECT id, tags::text, metadata::text FROM messages WHERE id = ANY($1::text[]);

-- name: latest_event_id
SELECT coalesce(max(id), 0) FROM events WHERE tenant_id = $1 AND id <= $2;
