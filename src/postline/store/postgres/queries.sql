-- Named queries of the PostgreSQL store. Parameters are positional ($1, $2, ...); batches
-- are passed as arrays and expanded with unnest, so one statement writes a whole batch.

-- name: schema_lock
-- Serialises schema installs and migrations of nodes starting at the same time.
SELECT pg_advisory_xact_lock(7201174031);

-- name: schema_installed
SELECT to_regclass('postline_schema') IS NOT NULL;

-- name: schema_version
SELECT version FROM postline_schema;

-- name: set_schema_version
UPDATE postline_schema SET version = $1;

-- name: create_tenant
INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3);

-- name: tenant_by_name
SELECT id, name, created_at FROM tenants WHERE name = $1;

-- name: tenant_by_id
SELECT id, name, created_at FROM tenants WHERE id = $1;

-- name: list_tenants
SELECT id, name, created_at FROM tenants ORDER BY name;

-- name: add_api_key
INSERT INTO api_keys (id, tenant_id, key_hash, prefix, created_at) VALUES ($1, $2, $3, $4, $5);

-- name: tenant_for_key
SELECT t.id, t.name, t.created_at
FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
WHERE k.key_hash = $1 AND k.revoked_at IS NULL;

-- name: revoke_api_key
UPDATE api_keys SET revoked_at = $3
WHERE tenant_id = $1 AND prefix = $2 AND revoked_at IS NULL;

-- name: get_idempotency
SELECT request_hash, status, response FROM idempotency WHERE tenant_id = $1 AND key = $2;

-- name: purge_idempotency
DELETE FROM idempotency WHERE created_at < $1;

-- name: enqueue
-- One statement for a group commit of several enqueue calls ("groups" 0..n-1): one round
-- trip, one commit. Idempotency claims go first (a concurrent claim of the same key waits
-- for the other transaction, then does nothing); a group's messages, recipients, domains
-- and "accepted" events are stored only when its claim was taken or it has none. Returns
-- the stored groups.
-- Claims $1..$7 (tenant, key, request hash, status, response, claimed at, group); $8 groups
-- without a claim; messages $9..$21 (the last: group); recipients $22..$32 (lease owner and
-- expiry NULL unless handed over leased; the last: group); per recipient $33 event data,
-- $34 node id, $35 state ('queued', or 'suppressed' for a suppressed address) and $36 the
-- event type ('accepted' or 'suppressed').
WITH claim AS (
    INSERT INTO idempotency (tenant_id, key, request_hash, status, response, created_at)
    SELECT c.tenant_id, c.key, c.request_hash, c.status, c.response, c.created_at
    FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[], $6::float8[])
         AS c(tenant_id, key, request_hash, status, response, created_at)
    ORDER BY c.tenant_id, c.key
    ON CONFLICT (tenant_id, key) DO NOTHING
    RETURNING tenant_id, key
), ok AS (
    SELECT c.g FROM unnest($1::text[], $2::text[], $7::int[]) AS c(tenant_id, key, g)
    WHERE (c.tenant_id, c.key) IN (SELECT tenant_id, key FROM claim)
    UNION ALL
    SELECT unnest($8::int[])
), m AS (
    INSERT INTO messages (id, tenant_id, created_at, mail_from, message_id_header, subject,
                          source, stream, tags, metadata, size, body)
    SELECT u.id, u.tenant_id, u.created_at, u.mail_from, u.message_id_header, u.subject,
           u.source, u.stream, u.tags::jsonb, u.metadata::jsonb, u.size, u.body
    FROM unnest($9::text[], $10::text[], $11::float8[], $12::text[], $13::text[], $14::text[],
                $15::text[], $16::text[], $17::text[], $18::text[], $19::int[], $20::bytea[],
                $21::int[])
         AS u(id, tenant_id, created_at, mail_from, message_id_header, subject, source, stream,
              tags, metadata, size, body, g)
    WHERE u.g IN (SELECT g FROM ok)
), d AS (
    -- Sorted, so concurrent enqueues take new domains' index entries in one order.
    INSERT INTO queue_domains (domain)
    SELECT DISTINCT x.domain FROM unnest($26::text[], $32::int[]) AS x(domain, g)
    WHERE x.g IN (SELECT g FROM ok)
    ORDER BY x.domain
    ON CONFLICT (domain) DO NOTHING
), r AS (
    INSERT INTO recipients (message_id, idx, tenant_id, address, domain, state, attempts,
                            created_at, next_attempt_at, expires_at, updated_at, lease_owner,
                            lease_expires_at)
    SELECT u.message_id, u.idx, u.tenant_id, u.address, u.domain, u.state, 0, u.created_at,
           u.next_attempt_at, u.expires_at, u.created_at, u.lease_owner, u.lease_expires_at
    FROM unnest($22::text[], $23::int[], $24::text[], $25::text[], $26::text[], $27::float8[],
                $28::float8[], $29::float8[], $30::text[], $31::float8[], $32::int[],
                $35::text[])
         AS u(message_id, idx, tenant_id, address, domain, created_at, next_attempt_at,
              expires_at, lease_owner, lease_expires_at, g, state)
    WHERE u.g IN (SELECT g FROM ok)
), e AS (
    INSERT INTO events (at, tenant_id, type, message_id, recipient_idx, recipient, node_id, data)
    SELECT u.at, u.tenant_id, u.type, u.message_id, u.idx, u.address, u.node_id,
           u.data::jsonb
    FROM unnest($27::float8[], $24::text[], $22::text[], $23::int[], $25::text[], $34::text[],
                $33::text[], $32::int[], $36::text[])
         WITH ORDINALITY AS u(at, tenant_id, message_id, idx, address, node_id, data, g, type, n)
    WHERE u.g IN (SELECT g FROM ok)
    ORDER BY u.n
)
SELECT coalesce(array_agg(g), '{}') FROM ok;

-- name: get_idempotency_many
SELECT i.tenant_id, i.key, i.request_hash, i.status, i.response
FROM idempotency i
JOIN unnest($1::text[], $2::text[]) AS c(tenant_id, key) USING (tenant_id, key);

-- name: notify
SELECT pg_notify($1, $2);

-- name: due_domains
-- One probe of the due index per listed domain (runtime partition pruning keeps each
-- probe in the domain's own partition).
SELECT q.domain, d.due
FROM queue_domains q
CROSS JOIN LATERAL (
    SELECT min(r.next_attempt_at) AS due FROM recipients r
    WHERE r.state = 'queued' AND r.domain = q.domain
) d
WHERE d.due IS NOT NULL AND q.domain > $2
ORDER BY q.domain
LIMIT $1;

-- name: empty_domains
SELECT q.domain FROM queue_domains q
WHERE NOT EXISTS (SELECT 1 FROM recipients r WHERE r.state = 'queued' AND r.domain = q.domain)
LIMIT $1;

-- name: lock_queue_domains
-- Waits for every enqueue writing queue_domains to commit, and holds new ones back, so the
-- emptiness check below sees every committed recipient.
LOCK TABLE queue_domains IN SHARE ROW EXCLUSIVE MODE;

-- name: drop_empty_domains
DELETE FROM queue_domains q
WHERE q.domain = ANY($1::text[])
  AND NOT EXISTS (SELECT 1 FROM recipients r WHERE r.state = 'queued' AND r.domain = q.domain);

-- name: lease
-- Due rows of one partition, oldest first; rows another node is leasing right now are
-- skipped, not waited for. The lease moves next_attempt_at to its expiry. The update finds
-- its rows through the primary key (message_id = ANY(...)), never by scanning the partition.
WITH due AS (
    SELECT r.message_id, r.idx FROM recipients r
    WHERE r.domain = $1 AND r.state = 'queued' AND r.next_attempt_at <= $2
      AND NOT EXISTS (SELECT 1 FROM queue_pauses p
                      WHERE p.domain IN ($1, '*') AND p.tenant_id IN (r.tenant_id, '*'))
    ORDER BY r.next_attempt_at
    LIMIT $3
    FOR UPDATE OF r SKIP LOCKED
)
UPDATE recipients r
SET lease_owner = $4, lease_expires_at = $5, next_attempt_at = $5
FROM due
WHERE r.domain = $1
  AND r.message_id = ANY ((SELECT array_agg(message_id) FROM due)::text[])
  AND r.message_id = due.message_id AND r.idx = due.idx
RETURNING r.message_id, r.idx, r.tenant_id, r.address, r.domain, r.attempts, r.created_at,
          r.expires_at;

-- name: lease_bodies
SELECT id, tenant_id, mail_from, body, message_id_header, source, stream FROM messages
WHERE id = ANY($1::text[]);

-- name: record
-- Delivered, bounced and expired outcomes always apply; deferrals and releases (state
-- 'queued') only to a recipient that is still queued (a cancelled one stays cancelled).
-- message_id = ANY($1) makes every partition answer through its primary key (an outcome
-- does not carry the domain, so partitions cannot be pruned).
-- A deferral or release also needs the recipient still leased by the node the attempt ran
-- on (owner NULL: no check), so a holder whose lease expired cannot reset another's lease.
-- $1..$10, $19 one entry per outcome; $11..$17 one entry per event; $18 node id;
-- $20..$23 suppressions to add (tenant, address, reason, detail) and $24, $25 (tenant,
-- address) whose soft-bounce runs a delivery ended; $26 now; $27, $28 the suppressions'
-- expiry and message id.
WITH u AS (
    SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::int[], $5::float8[],
                         $6::float8[], $7::int[], $8::text[], $9::text[], $10::text[],
                         $19::text[])
        AS u(message_id, idx, state, inc, at, next_attempt_at, code, enhanced, text, mx, owner)
), final AS (
    UPDATE recipients r
    SET state = u.state, attempts = r.attempts + u.inc, updated_at = u.at, last_code = u.code,
        last_enhanced = u.enhanced, last_text = u.text, last_mx = u.mx, lease_owner = NULL,
        lease_expires_at = NULL
    FROM u
    WHERE u.state <> 'queued' AND r.message_id = ANY($1::text[])
      AND r.message_id = u.message_id AND r.idx = u.idx
), retry AS (
    UPDATE recipients r
    SET next_attempt_at = u.next_attempt_at, attempts = r.attempts + u.inc, updated_at = u.at,
        last_code = coalesce(u.code, r.last_code),
        last_enhanced = coalesce(u.enhanced, r.last_enhanced),
        last_text = coalesce(u.text, r.last_text), last_mx = coalesce(u.mx, r.last_mx),
        lease_owner = NULL, lease_expires_at = NULL
    FROM u
    WHERE u.state = 'queued' AND r.message_id = ANY($1::text[])
      AND r.message_id = u.message_id AND r.idx = u.idx AND r.state = 'queued'
      AND (u.owner IS NULL OR r.lease_owner = u.owner)
), e AS (
    INSERT INTO events (at, tenant_id, type, message_id, recipient_idx, recipient, node_id, data)
    SELECT v.at, v.tenant_id, v.type, v.message_id, v.idx, v.address, $18, v.data::jsonb
    FROM unnest($11::float8[], $12::text[], $13::text[], $14::text[], $15::int[], $16::text[],
                $17::text[])
         WITH ORDINALITY AS v(at, tenant_id, type, message_id, idx, address, data, n)
    ORDER BY v.n
), s AS (
    INSERT INTO suppressions (tenant_id, address, reason, created_at, expires_at, source,
                              detail, message_id)
    SELECT DISTINCT ON (x.tenant_id, x.address) x.tenant_id, x.address, x.reason, $26,
           x.expires_at, 'bounce', x.detail, x.message_id
    FROM unnest($20::text[], $21::text[], $22::text[], $23::text[], $27::float8[],
                $28::text[])
         AS x(tenant_id, address, reason, detail, expires_at, message_id)
    ORDER BY x.tenant_id, x.address
    ON CONFLICT (tenant_id, address) DO UPDATE
    SET reason = excluded.reason, created_at = excluded.created_at,
        expires_at = excluded.expires_at, source = excluded.source, detail = excluded.detail,
        message_id = excluded.message_id
), c AS (
    DELETE FROM soft_bounces b
    USING unnest($24::text[], $25::text[]) AS y(tenant_id, address)
    WHERE b.tenant_id = y.tenant_id AND b.address = y.address
)
SELECT 1;

-- name: cancel
-- $1 message id, $2 tenant, $3 now, $4 node id.
WITH c AS (
    UPDATE recipients
    SET state = 'cancelled', updated_at = $3, lease_owner = NULL, lease_expires_at = NULL
    WHERE message_id = $1 AND tenant_id = $2 AND state = 'queued'
    RETURNING idx, address
), e AS (
    INSERT INTO events (at, tenant_id, type, message_id, recipient_idx, recipient, node_id, data)
    SELECT $3, $2, 'cancelled', $1, c.idx, c.address, $4, '{}'::jsonb FROM c ORDER BY c.idx
)
SELECT count(*) FROM c;

-- name: get_message
SELECT id, tenant_id, created_at, mail_from, subject, message_id_header, source, stream, size,
       tags::text, metadata::text
FROM messages WHERE id = $1 AND ($2::text IS NULL OR tenant_id = $2);

-- name: get_recipients
SELECT idx, address, domain, state, attempts, next_attempt_at, expires_at, updated_at,
       last_code, last_enhanced, last_text, last_mx, lease_owner, lease_expires_at
FROM recipients WHERE message_id = $1 ORDER BY idx;

-- name: queue_stats
-- A domain counts as paused when any tenant with rows in it is paused there (or paused as
-- a whole), or all are.
SELECT r.domain, count(*), count(*) FILTER (WHERE r.attempts > 0), min(r.created_at),
       min(r.next_attempt_at),
       bool_or((r.tenant_id, r.domain) IN (SELECT tenant_id, domain FROM queue_pauses)
               OR r.domain IN (SELECT domain FROM queue_pauses WHERE tenant_id = '*')
               OR r.tenant_id IN (SELECT tenant_id FROM queue_pauses WHERE domain = '*'))
FROM recipients r
WHERE r.state = 'queued'
GROUP BY r.domain
ORDER BY count(*) DESC;

-- name: queue_stats_tenant
SELECT r.domain, count(*), count(*) FILTER (WHERE r.attempts > 0), min(r.created_at),
       min(r.next_attempt_at),
       EXISTS (SELECT 1 FROM queue_pauses p
               WHERE p.domain IN (r.domain, '*') AND p.tenant_id IN ($1, '*'))
FROM recipients r
WHERE r.state = 'queued' AND r.tenant_id = $1
GROUP BY r.domain
ORDER BY count(*) DESC;

-- name: paused_tenant
SELECT domain, paused_at FROM queue_pauses WHERE tenant_id IN ($1, '*');

-- name: paused_all
SELECT tenant_id, domain FROM queue_pauses;

-- name: state_counts
SELECT state, count(*) FROM recipients GROUP BY state;

-- name: pause
INSERT INTO queue_pauses (tenant_id, domain, paused_at, reason) VALUES ($1, $2, $3, $4)
ON CONFLICT (tenant_id, domain) DO NOTHING;

-- name: resume
DELETE FROM queue_pauses WHERE tenant_id = $1 AND domain = $2;

-- name: events_max_id
SELECT max(id) FROM events;

-- name: events_above
SELECT id FROM events WHERE id > $1 ORDER BY id LIMIT $2;

-- name: events
-- $1 tenant, $2 after, $3 types (NULL: all), $4 recipient, $5 since, $6 until, $7 limit,
-- $8 horizon (no id above it is served yet).
SELECT id, at, tenant_id, type, message_id, recipient_idx, recipient, node_id, data::text
FROM events
WHERE tenant_id = $1 AND id > $2 AND id <= $8
  AND ($3::text[] IS NULL OR type = ANY($3::text[]))
  AND ($4::text IS NULL OR lower(recipient) = lower($4))
  AND ($5::float8 IS NULL OR at >= $5)
  AND ($6::float8 IS NULL OR at < $6)
ORDER BY id
LIMIT $7;

-- name: events_message
-- As events, for one message ($9).
SELECT id, at, tenant_id, type, message_id, recipient_idx, recipient, node_id, data::text
FROM events
WHERE message_id = $9 AND tenant_id = $1 AND id > $2 AND id <= $8
  AND ($3::text[] IS NULL OR type = ANY($3::text[]))
  AND ($4::text IS NULL OR lower(recipient) = lower($4))
  AND ($5::float8 IS NULL OR at >= $5)
  AND ($6::float8 IS NULL OR at < $6)
ORDER BY id
LIMIT $7;

-- name: renew_leases
-- $1 owner, $2 new expiry; $3..$5 message ids, indexes, domains of the leases to extend.
UPDATE recipients r SET lease_expires_at = $2, next_attempt_at = $2
FROM unnest($3::text[], $4::int[], $5::text[]) AS u(message_id, idx, domain)
WHERE r.domain = u.domain AND r.message_id = u.message_id AND r.idx = u.idx
  AND r.lease_owner = $1 AND r.state = 'queued'
RETURNING r.message_id, r.idx;

-- name: release_owned
-- $1 owner, $2 now.
UPDATE recipients SET lease_owner = NULL, lease_expires_at = NULL, next_attempt_at = $2
WHERE lease_owner = $1 AND state = 'queued';

-- name: suppressed
SELECT tenant_id, address, reason, created_at, expires_at, source, detail, message_id
FROM suppressions
WHERE tenant_id IN ($1, '*') AND address = ANY($2::text[])
  AND (expires_at IS NULL OR expires_at > $3);

-- name: add_suppressions
INSERT INTO suppressions (tenant_id, address, reason, created_at, expires_at, source, detail,
                          message_id)
SELECT DISTINCT ON (x.tenant_id, x.address) *
FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[], $5::float8[], $6::text[],
            $7::text[], $8::text[])
     AS x(tenant_id, address, reason, created_at, expires_at, source, detail, message_id)
ORDER BY x.tenant_id, x.address
ON CONFLICT (tenant_id, address) DO UPDATE
SET reason = excluded.reason, created_at = excluded.created_at,
    expires_at = excluded.expires_at, source = excluded.source, detail = excluded.detail,
    message_id = excluded.message_id;

-- name: remove_suppression
DELETE FROM suppressions WHERE tenant_id = $1 AND address = $2;

-- name: list_suppressions
-- $1 tenant, $2 after, $3 limit, $4 reason or NULL, $5 now.
SELECT tenant_id, address, reason, created_at, expires_at, source, detail, message_id
FROM suppressions
WHERE tenant_id = $1 AND address > $2 AND ($4::text IS NULL OR reason = $4)
  AND (expires_at IS NULL OR expires_at > $5)
ORDER BY address
LIMIT $3;

-- name: note_soft_bounce
-- $1 tenant, $2 address, $3 now, $4 window. A run counts while bounces keep coming.
INSERT INTO soft_bounces AS b (tenant_id, address, count, first_at, last_at)
VALUES ($1, $2, 1, $3, $3)
ON CONFLICT (tenant_id, address) DO UPDATE
SET count = CASE WHEN b.first_at < $3 - $4 THEN 1 ELSE b.count + 1 END,
    first_at = CASE WHEN b.first_at < $3 - $4 THEN $3 ELSE b.first_at END,
    last_at = $3
RETURNING count;

-- name: clear_soft_bounce
DELETE FROM soft_bounces WHERE tenant_id = $1 AND address = $2;

-- name: append_events
INSERT INTO events (at, tenant_id, type, message_id, recipient_idx, recipient, node_id, data)
SELECT v.at, v.tenant_id, v.type, v.message_id, v.idx, v.address, $8, v.data::jsonb
FROM unnest($1::float8[], $2::text[], $3::text[], $4::text[], $5::int[], $6::text[],
            $7::text[]) WITH ORDINALITY AS v(at, tenant_id, type, message_id, idx, address, data, n)
ORDER BY v.n;

-- name: store_inbound
INSERT INTO inbound (id, received_at, mail_from, rcpt_to, peer, body, state)
VALUES ($1, $2, $3, $4, $5, $6, 'pending');

-- name: pending_inbound
-- Claims a page of pending reports until $3 (nodes share the work; a claim that lapses is
-- taken again). $1 limit, $2 now.
UPDATE inbound SET claimed_until = $3
WHERE id IN (SELECT id FROM inbound
             WHERE state = 'pending' AND (claimed_until IS NULL OR claimed_until < $2)
             ORDER BY received_at LIMIT $1
             FOR UPDATE SKIP LOCKED)
RETURNING id, received_at, mail_from, rcpt_to, peer, body, attempts;

-- name: finish_inbound
UPDATE inbound SET state = $2, processed_at = $3, result = $4, attempts = attempts + 1,
                   claimed_until = NULL
WHERE id = $1;

-- name: add_reputation_counts
-- One row per key (the caller merges duplicates), in key order (no deadlock between nodes).
INSERT INTO reputation_counts AS c (tenant_id, stream, bucket, delivered, bounced, complained)
SELECT * FROM unnest($1::text[], $2::text[], $3::float8[], $4::int[], $5::int[], $6::int[])
ON CONFLICT (tenant_id, stream, bucket) DO UPDATE
SET delivered = c.delivered + excluded.delivered, bounced = c.bounced + excluded.bounced,
    complained = c.complained + excluded.complained;

-- name: reputation_totals
-- Buckets from $1 on, and none before the tenant's judged_since (set at a resume); $2 one
-- tenant or NULL for all.
SELECT c.tenant_id, c.stream, sum(c.delivered), sum(c.bounced), sum(c.complained)
FROM reputation_counts c LEFT JOIN tenant_status s ON s.tenant_id = c.tenant_id
WHERE c.bucket >= $1 AND ($2::text IS NULL OR c.tenant_id = $2)
  AND c.bucket >= coalesce(s.judged_since, 0)
GROUP BY c.tenant_id, c.stream
ORDER BY c.tenant_id, c.stream;

-- name: purge_reputation_counts
DELETE FROM reputation_counts WHERE bucket < $1;

-- name: tenant_statuses
SELECT tenant_id, status, reason, changed_at, changed_by, judged_since FROM tenant_status
WHERE $1::text IS NULL OR tenant_id = $1
ORDER BY tenant_id;

-- name: tenant_status_row
-- A row to lock for a compare-and-set ('ok' with no judgement window is the same as none).
INSERT INTO tenant_status (tenant_id, status, reason, changed_at, changed_by, judged_since)
VALUES ($1, 'ok', '', 0, '', 0)
ON CONFLICT (tenant_id) DO NOTHING;

-- name: tenant_status_lock
SELECT status FROM tenant_status WHERE tenant_id = $1 FOR UPDATE;

-- name: set_tenant_status
INSERT INTO tenant_status (tenant_id, status, reason, changed_at, changed_by, judged_since)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (tenant_id) DO UPDATE
SET status = excluded.status, reason = excluded.reason, changed_at = excluded.changed_at,
    changed_by = excluded.changed_by, judged_since = excluded.judged_since;

-- name: hold_tenant
-- A paused tenant: every one of its queues is held (domain '*').
INSERT INTO queue_pauses (tenant_id, domain, paused_at, reason) VALUES ($1, '*', $2, $3)
ON CONFLICT (tenant_id, domain) DO UPDATE SET reason = excluded.reason;

-- name: release_tenant
DELETE FROM queue_pauses WHERE tenant_id = $1 AND domain = '*';

-- name: add_sender_domain
INSERT INTO sender_domains (tenant_id, domain, created_at, status, verified_at, checked_at,
                            check_result)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (tenant_id, domain) DO NOTHING;

-- name: add_dkim_key
INSERT INTO dkim_keys (tenant_id, domain, selector, algorithm, public_key, private_sealed,
                       created_at, state)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (tenant_id, domain, selector) DO NOTHING;

-- name: get_sender_domains
SELECT tenant_id, domain, created_at, status, verified_at, checked_at, check_result
FROM sender_domains
WHERE ($1::text IS NULL OR tenant_id = $1) AND ($2::text IS NULL OR domain = $2)
ORDER BY tenant_id, domain;

-- name: get_dkim_keys
SELECT tenant_id, domain, selector, algorithm, public_key, private_sealed, created_at, state
FROM dkim_keys
WHERE ($1::text IS NULL OR tenant_id = $1) AND ($2::text IS NULL OR domain = $2)
ORDER BY tenant_id, domain, created_at, selector;

-- name: update_sender_domain
UPDATE sender_domains
SET status = $3, checked_at = $4, verified_at = $5, check_result = $6
WHERE tenant_id = $1 AND domain = $2;

-- name: set_dkim_key_state
UPDATE dkim_keys SET state = $4
WHERE tenant_id = $1 AND domain = $2 AND selector = $3;

-- name: remove_sender_domain
DELETE FROM sender_domains WHERE tenant_id = $1 AND domain = $2;

-- name: remove_dkim_keys
DELETE FROM dkim_keys WHERE tenant_id = $1 AND domain = $2;
