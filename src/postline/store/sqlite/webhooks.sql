-- Named queries of the SQLite store's webhook role. Parameters are bound by name.

-- name: create_webhook
INSERT INTO webhooks (id, tenant_id, url, events, description, batch_size, secret, old_secret,
    old_secret_until, status, disabled_reason, created_at, updated_at, cursor, batch_id,
    batch_last, batch_started, attempts, next_attempt_at, lease_owner, lease_until)
VALUES (:id, :tenant_id, :url, :events, :description, :batch_size, :secret, :old_secret,
    :old_secret_until, :status, :disabled_reason, :created_at, :updated_at, :cursor, :batch_id,
    :batch_last, :batch_started, :attempts, :next_attempt_at, :lease_owner, :lease_until);

-- name: get_webhook
SELECT * FROM webhooks WHERE id = :id AND (:tenant_id IS NULL OR tenant_id = :tenant_id);

-- name: list_webhooks
SELECT * FROM webhooks WHERE :tenant_id IS NULL OR tenant_id = :tenant_id
ORDER BY created_at, id;

-- name: delete_webhook
DELETE FROM webhooks WHERE id = :id AND tenant_id = :tenant_id;

-- name: delete_webhook_deliveries
DELETE FROM webhook_deliveries WHERE webhook_id = :id;

-- name: claim_webhooks
UPDATE webhooks SET lease_owner = :owner, lease_until = :until
WHERE id IN (
    SELECT id FROM webhooks
    WHERE status = 'active' AND next_attempt_at <= :now
      AND (lease_owner IS NULL OR lease_until < :now OR lease_owner = :owner)
    ORDER BY next_attempt_at
    LIMIT :limit
)
RETURNING *;

-- name: renew_webhooks
UPDATE webhooks SET lease_until = :until
WHERE id IN (SELECT value FROM json_each(:ids)) AND lease_owner = :owner AND status = 'active'
RETURNING id;

-- name: release_webhooks
UPDATE webhooks SET lease_owner = NULL, lease_until = NULL
WHERE lease_owner = :owner AND (:ids IS NULL OR id IN (SELECT value FROM json_each(:ids)));

-- name: begin_webhook_batch
UPDATE webhooks SET batch_id = :batch_id, batch_last = :last, batch_started = :now,
    attempts = 0
WHERE id = :id AND lease_owner = :owner;

-- name: finish_webhook_batch
-- Applies to the batch that follows the cursor it was chosen from; a batch remembered
-- beforehand (begin_webhook_batch) must be this one.
UPDATE webhooks SET
    cursor = CASE WHEN :done THEN :last ELSE cursor END,
    batch_id = CASE WHEN :done THEN NULL ELSE :batch_id END,
    batch_last = CASE WHEN :done THEN NULL ELSE :last END,
    batch_started = CASE WHEN :done THEN NULL ELSE coalesce(batch_started, :started) END,
    attempts = CASE WHEN :done THEN 0 ELSE :attempts END,
    next_attempt_at = :next_attempt_at,
    status = CASE WHEN :disable IS NULL THEN status ELSE 'disabled' END,
    disabled_reason = COALESCE(:disable, disabled_reason),
    lease_owner = CASE WHEN :disable IS NULL THEN lease_owner ELSE NULL END,
    lease_until = CASE WHEN :disable IS NULL THEN lease_until ELSE NULL END,
    updated_at = CASE WHEN :disable IS NULL THEN updated_at ELSE :now END
WHERE id = :id AND lease_owner = :owner AND cursor = :from_cursor
  AND (batch_id IS NULL OR batch_id = :batch_id);

-- name: webhook_held
SELECT 1 FROM webhooks WHERE id = :id AND lease_owner = :owner;

-- name: log_webhook_delivery
INSERT INTO webhook_deliveries (id, webhook_id, tenant_id, status, first_event, last_event,
    count, attempts, created_at, updated_at, response_code, latency_ms, error)
VALUES (:id, :webhook_id, :tenant_id, :status, :first_event, :last_event, :count, :attempts,
    :created_at, :updated_at, :response_code, :latency_ms, :error)
ON CONFLICT (id) DO UPDATE SET status = excluded.status, attempts = excluded.attempts,
    updated_at = excluded.updated_at, response_code = excluded.response_code,
    latency_ms = excluded.latency_ms, error = excluded.error;

-- name: webhook_deliveries
SELECT d.* FROM webhook_deliveries d
WHERE d.webhook_id = :webhook_id AND d.tenant_id = :tenant_id
  AND (:status IS NULL OR d.status = :status)
  AND (:before IS NULL OR d.updated_at < :before)
ORDER BY d.updated_at DESC
LIMIT :limit;

-- name: webhook_delivery_counts
SELECT status, count(*) FROM webhook_deliveries WHERE webhook_id = :webhook_id GROUP BY status;

-- name: message_labels
SELECT json_group_array(json_array(m.id, m.tags, m.metadata))
FROM json_each(:ids) j JOIN messages m ON m.id = j.value;

-- name: latest_event_id
SELECT coalesce(max(id), 0) FROM events WHERE tenant_id = :tenant_id;
