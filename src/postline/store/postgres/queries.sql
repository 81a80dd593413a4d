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
SELECT id, name, created_at, deleted_at FROM tenants WHERE name = $1;

-- name: tenant_by_id
SELECT id, name, created_at, deleted_at FROM tenants WHERE id = $1;

-- name: list_tenants
-- $1: the deleted tenants (true) or the others.
SELECT id, name, created_at, deleted_at FROM tenants
WHERE (deleted_at IS NOT NULL) = $1 ORDER BY name;

-- name: delete_tenant
-- $1 tenant, $2 now.
UPDATE tenants SET deleted_at = $2 WHERE id = $1 AND deleted_at IS NULL;

-- name: revoke_tenant_keys
UPDATE api_keys SET revoked_at = $2 WHERE tenant_id = $1 AND revoked_at IS NULL;

-- name: delete_tenant_domains
DELETE FROM sender_domains WHERE tenant_id = $1;

-- name: delete_tenant_dkim_keys
DELETE FROM dkim_keys WHERE tenant_id = $1;

-- name: delete_tenant_webhooks
DELETE FROM webhooks WHERE tenant_id = $1;

-- name: delete_tenant_pauses
-- The tenant's own holds of single queues (its whole-tenant hold stays).
DELETE FROM queue_pauses WHERE tenant_id = $1 AND domain <> '*';

-- name: purge_tenant_suppressions
-- $1 tenant, $2 limit.
DELETE FROM suppressions WHERE tenant_id = $1 AND address IN (
    SELECT address FROM suppressions WHERE tenant_id = $1 LIMIT $2);

-- name: purge_tenant_soft_bounces
DELETE FROM soft_bounces WHERE tenant_id = $1 AND address IN (
    SELECT address FROM soft_bounces WHERE tenant_id = $1 LIMIT $2);

-- name: add_api_key
INSERT INTO api_keys (id, tenant_id, key_hash, prefix, created_at, name, scopes, rate_limit,
                      rate_burst)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9);

-- name: key_identity
SELECT t.id, t.name, t.created_at, k.id, k.prefix, k.scopes, k.last_used_at, k.rate_limit,
       k.rate_burst
FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
WHERE k.key_hash = $1 AND k.revoked_at IS NULL AND t.deleted_at IS NULL;

-- name: api_keys
SELECT id, tenant_id, prefix, created_at, name, scopes, last_used_at, revoked_at, rate_limit,
       rate_burst
FROM api_keys WHERE tenant_id = $1 ORDER BY created_at, id;

-- name: tenant_limits
SELECT id, rate_limit, rate_burst, daily_quota, monthly_quota FROM tenants
WHERE ($1::text IS NULL OR id = $1)
  AND (rate_limit IS NOT NULL OR rate_burst IS NOT NULL OR daily_quota IS NOT NULL
       OR monthly_quota IS NOT NULL);

-- name: set_tenant_limits
UPDATE tenants SET rate_limit = $2, rate_burst = $3, daily_quota = $4, monthly_quota = $5
WHERE id = $1;

-- name: usage
-- Recipients counted on one day ($2) and in its month ($3 <= day < $4).
SELECT coalesce(sum(recipients) FILTER (WHERE day = $2), 0)::bigint,
       coalesce(sum(recipients), 0)::bigint
FROM tenant_usage WHERE tenant_id = $1 AND day >= $3 AND day < $4;

-- name: lock_usage
-- Before an enqueue with a quota, in its transaction: lock (creating at 0) the usage rows
-- ($1 tenants, $2 days; sorted, so that two enqueues take their locks in one order) and
-- read them as the latest commit left them, with the whole month: the other days of the
-- month ('YYYY-MM' <= day < 'YYYY-MM~') are not written any more.
WITH l AS (
    INSERT INTO tenant_usage (tenant_id, day, recipients)
    SELECT u.tenant_id, u.day, 0 FROM unnest($1::text[], $2::text[]) AS u(tenant_id, day)
    ORDER BY u.tenant_id, u.day
    ON CONFLICT (tenant_id, day) DO UPDATE SET recipients = tenant_usage.recipients
    RETURNING tenant_id, day, recipients
)
SELECT l.tenant_id, l.day, l.recipients,
       l.recipients + coalesce((SELECT sum(o.recipients) FROM tenant_usage o
                                WHERE o.tenant_id = l.tenant_id AND o.day <> l.day
                                  AND o.day >= left(l.day, 7)
                                  AND o.day < left(l.day, 7) || '~'), 0)
FROM l;

-- name: revoke_api_key_id
UPDATE api_keys SET revoked_at = $3
WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL;

-- name: update_api_key
UPDATE api_keys SET scopes = $3, rate_limit = $4, rate_burst = $5
WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL;

-- name: touch_api_key
UPDATE api_keys SET last_used_at = $2 WHERE id = $1;

-- name: tenant_for_key
SELECT t.id, t.name, t.created_at
FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
WHERE k.key_hash = $1 AND k.revoked_at IS NULL AND t.deleted_at IS NULL;

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
-- for the other transaction, then does nothing); a group's messages, recipients
-- and "accepted" events are stored only when its claim was taken or it has none. Returns
-- the stored groups. (The counters of queues and states follow from the trigger on
-- recipients.)
-- Claims $1..$7 (tenant, key, request hash, status, response, claimed at, group); $8 groups
-- without a claim; messages $9..$21 (the last: group); recipients $22..$32 (lease owner and
-- expiry NULL unless handed over leased; the last: group); per recipient $33 event data,
-- $34 node id, $35 state ('queued', or 'suppressed' for a suppressed address) and $36 the
-- event type ('accepted' or 'suppressed'); usage $37..$40 (tenant, UTC day, recipients,
-- group) added to tenant_usage for the stored groups.
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
), usage AS (
    INSERT INTO tenant_usage (tenant_id, day, recipients)
    SELECT u.tenant_id, u.day, sum(u.n)
    FROM unnest($37::text[], $38::text[], $39::int[], $40::int[]) AS u(tenant_id, day, n, g)
    WHERE u.g IN (SELECT g FROM ok)
    GROUP BY u.tenant_id, u.day
    ORDER BY u.tenant_id, u.day
    ON CONFLICT (tenant_id, day) DO UPDATE
        SET recipients = tenant_usage.recipients + excluded.recipients
)
SELECT coalesce(array_agg(g), '{}') FROM ok;

-- name: get_idempotency_many
SELECT i.tenant_id, i.key, i.request_hash, i.status, i.response
FROM idempotency i
JOIN unnest($1::text[], $2::text[]) AS c(tenant_id, key) USING (tenant_id, key);

-- name: notify
SELECT pg_notify($1, $2);

-- name: due_queues
-- One page of queues with queued recipients, none paused, in (tenant, domain) order after
-- ($2, $3), each with the due time of its first recipient not leased by $1 (NULL: $1 holds
-- them all): counts from the totals plus pending deltas, one index probe per queue.
WITH c AS (
    SELECT x.tenant_id, x.domain FROM (
        SELECT tenant_id, domain, queued FROM queue_counts
        WHERE (tenant_id, domain) > ($2, $3)
        UNION ALL
        SELECT tenant_id, domain, queued FROM queue_count_deltas
        WHERE (tenant_id, domain) > ($2, $3)
    ) x
    GROUP BY x.tenant_id, x.domain
    HAVING sum(x.queued) > 0
       AND NOT EXISTS (SELECT 1 FROM queue_pauses p
                       WHERE p.domain IN (x.domain, '*') AND p.tenant_id IN (x.tenant_id, '*'))
    ORDER BY x.tenant_id, x.domain
    LIMIT $4
)
SELECT c.tenant_id, c.domain,
       (SELECT r.next_attempt_at FROM recipients r
        WHERE r.domain = c.domain AND r.tenant_id = c.tenant_id AND r.state = 'queued'
          AND (r.lease_owner IS NULL OR r.lease_owner <> $1)
        ORDER BY r.next_attempt_at LIMIT 1)
FROM c
ORDER BY c.tenant_id, c.domain;

-- name: lease_queues
-- Due recipients of several queues ($1 tenants, $2 domains, $3 limits; n: the request's
-- position), oldest due first within each, paused queues left alone; rows another node is
-- leasing right now are skipped, not waited for. The lease moves next_attempt_at to its
-- expiry ($5). The update finds its rows through the primary key.
WITH req AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::int[]) WITH ORDINALITY
        AS q(tenant_id, domain, lim, n)
), due AS (
    SELECT q.n, x.message_id, x.idx, q.domain
    FROM req q
    CROSS JOIN LATERAL (
        SELECT r.message_id, r.idx FROM recipients r
        WHERE r.domain = q.domain AND r.tenant_id = q.tenant_id AND r.state = 'queued'
          AND r.next_attempt_at <= $4
          AND NOT EXISTS (SELECT 1 FROM queue_pauses p
                          WHERE p.domain IN (q.domain, '*') AND p.tenant_id IN (q.tenant_id, '*'))
        ORDER BY r.next_attempt_at
        LIMIT q.lim
        FOR UPDATE OF r SKIP LOCKED
    ) x
)
UPDATE recipients r
SET lease_owner = $6, lease_expires_at = $5, next_attempt_at = $5
FROM due
WHERE r.message_id = ANY ((SELECT array_agg(message_id) FROM due)::text[])
  AND r.domain = due.domain AND r.message_id = due.message_id AND r.idx = due.idx
RETURNING due.n, r.message_id, r.idx, r.tenant_id, r.address, r.domain, r.attempts,
          r.created_at, r.expires_at;

-- name: queues_next_due
-- For each queue ($2 tenants, $3 domains): when its first recipient not leased by $1 falls
-- due (NULL: none, or the queue is paused).
SELECT q.n,
       (SELECT r.next_attempt_at FROM recipients r
        WHERE r.domain = q.domain AND r.tenant_id = q.tenant_id AND r.state = 'queued'
          AND (r.lease_owner IS NULL OR r.lease_owner <> $1)
          AND NOT EXISTS (SELECT 1 FROM queue_pauses p
                          WHERE p.domain IN (q.domain, '*') AND p.tenant_id IN (q.tenant_id, '*'))
        ORDER BY r.next_attempt_at LIMIT 1)
FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS q(tenant_id, domain, n);

-- name: lease
-- Due rows of one domain, every tenant's (tools and tests; the engine uses lease_queues),
-- oldest first; rows another node is leasing right now are skipped, not waited for.
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
-- Each outcome finds its row by primary key, joined row by row ($29: its domain, which
-- prunes the partitions; NULL when unknown: every partition answers). No array of ids is
-- matched with = ANY: a plan for "any of N ids" costs the planner per id and partition
-- (135 ms for 1,000 outcomes over 16 partitions), and a plan cached for 10 ids scanned
-- whole partitions when 1,000 came.
-- A deferral or release also needs the recipient still leased by the node the attempt ran
-- on (owner NULL: no check), so a holder whose lease expired cannot reset another's lease.
-- $1..$10, $19, $29 one entry per outcome; $11..$17 one entry per event; $18 node id;
-- $20..$23 suppressions to add (tenant, address, reason, detail) and $24, $25 (tenant,
-- address) whose soft-bounce runs a delivery ended; $26 now; $27, $28 the suppressions'
-- expiry and message id.
WITH u AS (
    SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::int[], $5::float8[],
                         $6::float8[], $7::int[], $8::text[], $9::text[], $10::text[],
                         $19::text[], $29::text[])
        AS u(message_id, idx, state, inc, at, next_attempt_at, code, enhanced, text, mx, owner,
             domain)
), final AS (
    UPDATE recipients r
    SET state = u.state, attempts = r.attempts + u.inc, updated_at = u.at, last_code = u.code,
        last_enhanced = u.enhanced, last_text = u.text, last_mx = u.mx, lease_owner = NULL,
        lease_expires_at = NULL
    FROM u
    WHERE u.state <> 'queued' AND r.message_id = u.message_id AND r.idx = u.idx
      AND r.domain = coalesce(u.domain, r.domain)
), retry AS (
    UPDATE recipients r
    SET next_attempt_at = u.next_attempt_at, attempts = r.attempts + u.inc, updated_at = u.at,
        last_code = coalesce(u.code, r.last_code),
        last_enhanced = coalesce(u.enhanced, r.last_enhanced),
        last_text = coalesce(u.text, r.last_text), last_mx = coalesce(u.mx, r.last_mx),
        lease_owner = NULL, lease_expires_at = NULL
    FROM u
    WHERE u.state = 'queued' AND r.message_id = u.message_id AND r.idx = u.idx
      AND r.domain = coalesce(u.domain, r.domain) AND r.state = 'queued'
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
       tags::text AS tags, metadata::text AS metadata, purged_at
FROM messages WHERE id = $1 AND ($2::text IS NULL OR tenant_id = $2);

-- name: get_recipients
SELECT idx, address, domain, state, attempts, next_attempt_at, expires_at, updated_at,
       last_code, last_enhanced, last_text, last_mx, lease_owner, lease_expires_at
FROM recipients WHERE message_id = $1 ORDER BY idx;

-- name: queue_page
-- One page of a tenant's queues ($1) in domain order after $2 (or only domain $4), from
-- the counts; age and next attempt by one index probe each.
WITH c AS (
    SELECT x.domain, sum(x.queued) AS queued, sum(x.deferred) AS deferred FROM (
        SELECT domain, queued, deferred FROM queue_counts
        WHERE tenant_id = $1 AND domain > $2 AND ($4::text IS NULL OR domain = $4)
        UNION ALL
        SELECT domain, queued, deferred FROM queue_count_deltas
        WHERE tenant_id = $1 AND domain > $2 AND ($4::text IS NULL OR domain = $4)
    ) x
    GROUP BY x.domain
    HAVING sum(x.queued) > 0
    ORDER BY x.domain
    LIMIT $3
)
SELECT c.domain, c.queued, c.deferred,
       (SELECT r.created_at FROM recipients r
        WHERE r.domain = c.domain AND r.tenant_id = $1 AND r.state = 'queued'
        ORDER BY r.created_at LIMIT 1),
       (SELECT r.next_attempt_at FROM recipients r
        WHERE r.domain = c.domain AND r.tenant_id = $1 AND r.state = 'queued'
        ORDER BY r.next_attempt_at LIMIT 1),
       EXISTS (SELECT 1 FROM queue_pauses p
               WHERE p.domain IN (c.domain, '*') AND p.tenant_id IN ($1, '*'))
FROM c
ORDER BY c.domain;

-- name: queue_domains_page
-- One page of the domains with queued mail (every tenant's) after $1, or only domain $3,
-- with every tenant's queue of each: (domain, tenant, queued, deferred).
WITH d AS (
    SELECT x.domain FROM (
        SELECT domain, queued FROM queue_counts
        WHERE domain > $1 AND ($3::text IS NULL OR domain = $3)
        UNION ALL
        SELECT domain, queued FROM queue_count_deltas
        WHERE domain > $1 AND ($3::text IS NULL OR domain = $3)
    ) x
    GROUP BY x.domain
    HAVING sum(x.queued) > 0
    ORDER BY x.domain
    LIMIT $2
), c AS (
    SELECT x.domain, x.tenant_id, sum(x.queued) AS queued, sum(x.deferred) AS deferred FROM (
        SELECT domain, tenant_id, queued, deferred FROM queue_counts
        WHERE domain IN (SELECT domain FROM d)
        UNION ALL
        SELECT domain, tenant_id, queued, deferred FROM queue_count_deltas
        WHERE domain IN (SELECT domain FROM d)
    ) x
    GROUP BY x.domain, x.tenant_id
    HAVING sum(x.queued) > 0
)
SELECT c.domain, c.queued, c.deferred,
       (SELECT r.created_at FROM recipients r
        WHERE r.domain = c.domain AND r.tenant_id = c.tenant_id AND r.state = 'queued'
        ORDER BY r.created_at LIMIT 1),
       (SELECT r.next_attempt_at FROM recipients r
        WHERE r.domain = c.domain AND r.tenant_id = c.tenant_id AND r.state = 'queued'
        ORDER BY r.next_attempt_at LIMIT 1),
       EXISTS (SELECT 1 FROM queue_pauses p
               WHERE p.domain IN (c.domain, '*') AND p.tenant_id IN (c.tenant_id, '*'))
FROM c
ORDER BY c.domain;

-- name: queue_depths
-- Queued recipients in all (domain NULL) and in the $1 deepest domains.
WITH x AS (
    SELECT domain, queued FROM queue_counts
    UNION ALL
    SELECT domain, queued FROM queue_count_deltas
), d AS (
    SELECT domain, sum(queued) AS n FROM x GROUP BY domain HAVING sum(queued) > 0
)
(SELECT NULL::text, coalesce(sum(n), 0)::bigint FROM d)
UNION ALL
(SELECT domain, n::bigint FROM d ORDER BY n DESC LIMIT $1);

-- name: queue_oldest
-- When the oldest recipient still queued in each domain of $1 (every tenant) was
-- accepted: one probe of recipients_age per (domain, tenant) with mail there.
SELECT q.domain, min(o.created_at)
FROM (SELECT DISTINCT domain, tenant_id FROM queue_counts WHERE domain = ANY($1::text[])
      UNION
      SELECT domain, tenant_id FROM queue_count_deltas WHERE domain = ANY($1::text[])) q
CROSS JOIN LATERAL (
    SELECT r.created_at FROM recipients r
    WHERE r.domain = q.domain AND r.tenant_id = q.tenant_id AND r.state = 'queued'
    ORDER BY r.created_at LIMIT 1
) o
GROUP BY q.domain;

-- name: fold_counts
-- Moves pending deltas into the totals (one node at a time; a concurrent fold skips). The
-- deltas a DELETE does not see (committed later) wait for the next fold.
WITH lock AS (
    SELECT pg_try_advisory_xact_lock(7201174032) AS got
), qd AS (
    DELETE FROM queue_count_deltas WHERE (SELECT got FROM lock)
    RETURNING tenant_id, domain, queued, deferred
), qs AS (
    INSERT INTO queue_counts (tenant_id, domain, queued, deferred)
    SELECT tenant_id, domain, sum(queued), sum(deferred) FROM qd
    GROUP BY tenant_id, domain
    ORDER BY tenant_id, domain
    ON CONFLICT (tenant_id, domain) DO UPDATE
    SET queued = queue_counts.queued + excluded.queued,
        deferred = queue_counts.deferred + excluded.deferred
), sd AS (
    DELETE FROM recipient_count_deltas WHERE (SELECT got FROM lock)
    RETURNING state, n
), ss AS (
    INSERT INTO recipient_counts (state, n)
    SELECT state, sum(n) FROM sd GROUP BY state ORDER BY state
    ON CONFLICT (state) DO UPDATE SET n = recipient_counts.n + excluded.n
)
SELECT (SELECT count(*) FROM qd) + (SELECT count(*) FROM sd);

-- name: drop_empty_queues
DELETE FROM queue_counts q
WHERE q.queued = 0
  AND NOT EXISTS (SELECT 1 FROM queue_count_deltas d
                  WHERE d.tenant_id = q.tenant_id AND d.domain = q.domain);

-- name: domain_queues
-- Every tenant's queue of domain $1 (counters and their deltas); age, next attempt and
-- the recipients due at $2 (counted in the index, up to $3) by index probes.
WITH c AS (
    SELECT x.tenant_id, sum(x.queued) AS queued, sum(x.deferred) AS deferred FROM (
        SELECT tenant_id, queued, deferred FROM queue_counts WHERE domain = $1
        UNION ALL
        SELECT tenant_id, queued, deferred FROM queue_count_deltas WHERE domain = $1
    ) x
    GROUP BY x.tenant_id
    HAVING sum(x.queued) > 0
)
SELECT c.tenant_id, c.queued, c.deferred,
       (SELECT count(*) FROM (
            SELECT 1 FROM recipients r
            WHERE r.domain = $1 AND r.tenant_id = c.tenant_id AND r.state = 'queued'
              AND r.next_attempt_at <= $2 AND r.lease_owner IS NULL
            LIMIT $3) d),
       (SELECT min(r.created_at) FROM recipients r
        WHERE r.domain = $1 AND r.tenant_id = c.tenant_id AND r.state = 'queued'),
       (SELECT min(r.next_attempt_at) FROM recipients r
        WHERE r.domain = $1 AND r.tenant_id = c.tenant_id AND r.state = 'queued')
FROM c
ORDER BY c.tenant_id;

-- name: retry_queued
-- $1 tenant, $2 domain, $3 now, $4 limit: up to $4 queued, not leased recipients of one
-- queue that are not due yet, due now (rows another writer holds are left for later).
WITH s AS (
    SELECT message_id, idx FROM recipients
    WHERE domain = $2 AND tenant_id = $1 AND state = 'queued' AND next_attempt_at > $3
      AND lease_owner IS NULL
    LIMIT $4
    FOR UPDATE SKIP LOCKED
)
UPDATE recipients r SET next_attempt_at = $3, updated_at = $3
FROM s
WHERE r.domain = $2 AND r.tenant_id = $1 AND r.message_id = s.message_id AND r.idx = s.idx;

-- name: bounce_queued
-- $1 tenant, $2 domain, $3 now, $4 limit, $5 text, $6 node id, $7 event data: up to $4
-- queued, not leased recipients of one queue bounced by an operator, with their events.
WITH s AS (
    SELECT message_id, idx FROM recipients
    WHERE domain = $2 AND tenant_id = $1 AND state = 'queued' AND lease_owner IS NULL
    LIMIT $4
    FOR UPDATE SKIP LOCKED
), b AS (
    UPDATE recipients r
    SET state = 'bounced', updated_at = $3, last_text = $5, lease_owner = NULL,
        lease_expires_at = NULL
    FROM s
    WHERE r.domain = $2 AND r.tenant_id = $1 AND r.message_id = s.message_id
      AND r.idx = s.idx
    RETURNING r.message_id, r.idx, r.address
), e AS (
    INSERT INTO events (at, tenant_id, type, message_id, recipient_idx, recipient, node_id, data)
    SELECT $3, $1, 'bounced', b.message_id, b.idx, b.address, $6, $7::jsonb
    FROM b ORDER BY b.message_id, b.idx
)
SELECT count(*) FROM b;

-- name: cancel_queued
-- $1 tenant, $2 domain, $3 now, $4 limit, $5 node id: up to $4 queued recipients of one
-- queue cancelled, leased ones too, with their events.
WITH s AS (
    SELECT message_id, idx FROM recipients
    WHERE domain = $2 AND tenant_id = $1 AND state = 'queued'
    LIMIT $4
    FOR UPDATE SKIP LOCKED
), c AS (
    UPDATE recipients r
    SET state = 'cancelled', updated_at = $3, lease_owner = NULL, lease_expires_at = NULL
    FROM s
    WHERE r.domain = $2 AND r.tenant_id = $1 AND r.message_id = s.message_id
      AND r.idx = s.idx
    RETURNING r.message_id, r.idx, r.address
), e AS (
    INSERT INTO events (at, tenant_id, type, message_id, recipient_idx, recipient, node_id, data)
    SELECT $3, $1, 'cancelled', c.message_id, c.idx, c.address, $5, '{}'::jsonb
    FROM c ORDER BY c.message_id, c.idx
)
SELECT count(*) FROM c;

-- name: queued_page
-- $1 tenant, $2 domain, $3-$5 the cursor (created_at, message id, index), $6 limit: up to
-- $6 queued recipients of one queue after the cursor, oldest first, with their message's
-- stream and tags and whether they are leased.
SELECT r.created_at, r.message_id, r.idx, r.lease_owner IS NOT NULL, m.stream, m.tags::text
FROM recipients r JOIN messages m ON m.id = r.message_id
WHERE r.domain = $2 AND r.tenant_id = $1 AND r.state = 'queued'
  AND (r.created_at, r.message_id, r.idx) > ($3, $4, $5)
ORDER BY r.created_at, r.message_id, r.idx
LIMIT $6;

-- name: retry_listed
-- $1 tenant, $2 domain, $3 now, $4 message ids, $5 indexes: those recipients, queued, not
-- leased and not due yet, due now.
UPDATE recipients r SET next_attempt_at = $3, updated_at = $3
FROM unnest($4::text[], $5::int[]) AS s(message_id, idx)
WHERE r.domain = $2 AND r.tenant_id = $1 AND r.message_id = s.message_id AND r.idx = s.idx
  AND r.state = 'queued' AND r.lease_owner IS NULL AND r.next_attempt_at > $3;

-- name: bounce_listed
-- $1 tenant, $2 domain, $3 now, $4 message ids, $5 indexes, $6 text, $7 node id, $8 event
-- data: those recipients, queued and not leased, bounced by an operator with their events.
WITH b AS (
    UPDATE recipients r
    SET state = 'bounced', updated_at = $3, last_text = $6, lease_owner = NULL,
        lease_expires_at = NULL
    FROM unnest($4::text[], $5::int[]) AS s(message_id, idx)
    WHERE r.domain = $2 AND r.tenant_id = $1 AND r.message_id = s.message_id
      AND r.idx = s.idx AND r.state = 'queued' AND r.lease_owner IS NULL
    RETURNING r.message_id, r.idx, r.address
), e AS (
    INSERT INTO events (at, tenant_id, type, message_id, recipient_idx, recipient, node_id, data)
    SELECT $3, $1, 'bounced', b.message_id, b.idx, b.address, $7, $8::jsonb
    FROM b ORDER BY b.message_id, b.idx
)
SELECT count(*) FROM b;

-- name: queue_pauses
SELECT tenant_id, domain, paused_at, reason FROM queue_pauses ORDER BY tenant_id, domain;

-- name: paused_tenant
SELECT domain, paused_at FROM queue_pauses WHERE tenant_id IN ($1, '*');

-- name: paused_all
SELECT tenant_id, domain FROM queue_pauses;

-- name: state_counts
SELECT state, sum(n)::bigint FROM (
    SELECT state, n FROM recipient_counts
    UNION ALL
    SELECT state, n FROM recipient_count_deltas
) x
GROUP BY state
HAVING sum(n) > 0;

-- name: pause
INSERT INTO queue_pauses (tenant_id, domain, paused_at, reason) VALUES ($1, $2, $3, $4)
ON CONFLICT (tenant_id, domain) DO NOTHING;

-- name: resume
DELETE FROM queue_pauses WHERE tenant_id = $1 AND domain = $2;

-- name: lift_pause
DELETE FROM queue_pauses WHERE tenant_id = $1 AND domain = $2 AND reason = $3;

-- name: events_max_id
SELECT max(id), min(id) FROM events;

-- name: events_above
SELECT id FROM events WHERE id > $1 ORDER BY id LIMIT $2;

-- name: events
-- $1 tenant, $2 after, $3 types (NULL: all), $4 recipient, $5 since, $6 until, $7 limit,
-- $8 horizon (no id above it is served yet).
SELECT id, at, tenant_id, type, message_id, recipient_idx, recipient, node_id, data::text AS data
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
SELECT id, at, tenant_id, type, message_id, recipient_idx, recipient, node_id, data::text AS data
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

-- name: lift_tenant_hold
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

-- name: add_admin_token
INSERT INTO admin_tokens (id, name, token_hash, prefix, created_at) VALUES ($1, $2, $3, $4, $5);

-- name: admin_tokens
SELECT id, name, prefix, created_at, last_used_at, revoked_at FROM admin_tokens
ORDER BY created_at, id;

-- name: admin_token_for_hash
SELECT id, name, prefix, created_at, last_used_at, revoked_at FROM admin_tokens
WHERE token_hash = $1 AND revoked_at IS NULL;

-- name: touch_admin_token
UPDATE admin_tokens SET last_used_at = $2 WHERE id = $1;

-- name: revoke_admin_token
UPDATE admin_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL;

-- name: append_audit
INSERT INTO audit_log (at, actor_kind, actor_id, tenant_id, action, target, request_id, detail)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb) RETURNING id;

-- name: audit_entries
-- One page in id order after $1; every tenant's (and none's) when $2 is NULL.
SELECT id, at, actor_kind, actor_id, tenant_id, action, target, request_id,
       detail::text AS detail
FROM audit_log
WHERE id > $1 AND ($2::text IS NULL OR tenant_id = $2)
ORDER BY id LIMIT $3;

-- name: add_activity
-- One row per minute (the caller merges duplicates), in minute order.
INSERT INTO activity_counts AS c (bucket, accepted, delivered, deferred, bounced, complained)
SELECT * FROM unnest($1::float8[], $2::int[], $3::int[], $4::int[], $5::int[], $6::int[])
ON CONFLICT (bucket) DO UPDATE
SET accepted = c.accepted + excluded.accepted, delivered = c.delivered + excluded.delivered,
    deferred = c.deferred + excluded.deferred, bounced = c.bounced + excluded.bounced,
    complained = c.complained + excluded.complained;

-- name: activity
SELECT bucket, accepted, delivered, deferred, bounced, complained FROM activity_counts
WHERE bucket >= $1 ORDER BY bucket;

-- name: purge_activity
DELETE FROM activity_counts WHERE bucket < $1;

-- name: find_messages
-- The latest $3 messages by the creation-time index, each probed for the recipient.
SELECT m.id FROM (
    SELECT id, tags, created_at FROM messages ORDER BY created_at DESC LIMIT $3
) m
WHERE ($1::text IS NULL OR m.tags ? $1::text)
  AND ($2::text IS NULL OR EXISTS (
      SELECT 1 FROM recipients r WHERE r.message_id = m.id AND lower(r.address) = lower($2)))
ORDER BY m.created_at DESC
LIMIT $4;

-- name: add_reroute
-- A reroute replaces the one with the same domain and provider.
INSERT INTO reroutes (id, domain, provider, host, port, created_at, until, reason)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (domain, provider) DO UPDATE SET
    id = excluded.id, host = excluded.host, port = excluded.port,
    created_at = excluded.created_at, until = excluded.until, reason = excluded.reason;

-- name: reroutes
SELECT id, domain, provider, host, port, created_at, until, reason FROM reroutes
ORDER BY created_at, id;

-- name: remove_reroute
DELETE FROM reroutes WHERE id = $1
RETURNING id, domain, provider, host, port, created_at, until, reason;
