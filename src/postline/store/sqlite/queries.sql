-- Named queries of the SQLite store. Parameters are bound by name.

-- name: create_tenant
INSERT INTO tenants (id, name, created_at) VALUES (:id, :name, :created_at);

-- name: tenant_by_name
SELECT id, name, created_at, deleted_at FROM tenants WHERE name = :name;

-- name: tenant_by_id
SELECT id, name, created_at, deleted_at FROM tenants WHERE id = :id;

-- name: list_tenants
SELECT id, name, created_at, deleted_at FROM tenants
WHERE (deleted_at IS NOT NULL) = :deleted ORDER BY name;

-- name: delete_tenant
UPDATE tenants SET deleted_at = :now WHERE id = :tenant_id AND deleted_at IS NULL;

-- name: revoke_tenant_keys
UPDATE api_keys SET revoked_at = :now WHERE tenant_id = :tenant_id AND revoked_at IS NULL;

-- name: delete_tenant_domains
DELETE FROM sender_domains WHERE tenant_id = :tenant_id;

-- name: delete_tenant_dkim_keys
DELETE FROM dkim_keys WHERE tenant_id = :tenant_id;

-- name: delete_tenant_webhooks
DELETE FROM webhooks WHERE tenant_id = :tenant_id;

-- name: delete_tenant_pauses
-- The tenant's own holds of single queues (its whole-tenant hold stays).
DELETE FROM queue_pauses WHERE tenant_id = :tenant_id AND domain <> '*';

-- name: purge_tenant_suppressions
DELETE FROM suppressions WHERE tenant_id = :tenant_id AND address IN (
    SELECT address FROM suppressions WHERE tenant_id = :tenant_id LIMIT :limit);

-- name: purge_tenant_soft_bounces
DELETE FROM soft_bounces WHERE tenant_id = :tenant_id AND address IN (
    SELECT address FROM soft_bounces WHERE tenant_id = :tenant_id LIMIT :limit);

-- name: add_api_key
INSERT INTO api_keys (id, tenant_id, key_hash, prefix, created_at, name, scopes, rate_limit,
                      rate_burst)
VALUES (:id, :tenant_id, :key_hash, :prefix, :created_at, :name, :scopes, :rate, :burst);

-- name: key_identity
SELECT t.id, t.name, t.created_at, k.id, k.prefix, k.scopes, k.last_used_at, k.rate_limit,
       k.rate_burst
FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
WHERE k.key_hash = :key_hash AND k.revoked_at IS NULL AND t.deleted_at IS NULL;

-- name: api_keys
SELECT id, tenant_id, prefix, created_at, name, scopes, last_used_at, revoked_at, rate_limit,
       rate_burst
FROM api_keys WHERE tenant_id = :tenant_id ORDER BY created_at, id;

-- name: tenant_limits
SELECT id, rate_limit, rate_burst, daily_quota, monthly_quota FROM tenants
WHERE (:tenant_id IS NULL OR id = :tenant_id)
  AND (rate_limit IS NOT NULL OR rate_burst IS NOT NULL OR daily_quota IS NOT NULL
       OR monthly_quota IS NOT NULL);

-- name: set_tenant_limits
UPDATE tenants SET rate_limit = :rate, rate_burst = :burst, daily_quota = :daily,
                   monthly_quota = :monthly
WHERE id = :tenant_id;

-- name: usage
-- Recipients counted on one day (:day) and in its month (:first <= day < :next).
SELECT coalesce(sum(CASE WHEN day = :day THEN recipients END), 0), coalesce(sum(recipients), 0)
FROM tenant_usage WHERE tenant_id = :tenant_id AND day >= :first AND day < :next;

-- name: count_usage
INSERT INTO tenant_usage (tenant_id, day, recipients) VALUES (?, ?, ?)
ON CONFLICT (tenant_id, day) DO UPDATE SET recipients = recipients + excluded.recipients;

-- name: revoke_api_key_id
UPDATE api_keys SET revoked_at = :now
WHERE tenant_id = :tenant_id AND id = :id AND revoked_at IS NULL;

-- name: update_api_key
UPDATE api_keys SET scopes = :scopes, rate_limit = :rate, rate_burst = :burst
WHERE tenant_id = :tenant_id AND id = :id AND revoked_at IS NULL;

-- name: touch_api_key
UPDATE api_keys SET last_used_at = :now WHERE id = :id;

-- name: tenant_for_key
SELECT t.id, t.name, t.created_at
FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
WHERE k.key_hash = :key_hash AND k.revoked_at IS NULL AND t.deleted_at IS NULL;

-- name: revoke_api_key
UPDATE api_keys SET revoked_at = :now
WHERE tenant_id = :tenant_id AND prefix = :prefix AND revoked_at IS NULL;

-- name: get_idempotency
SELECT request_hash, status, response FROM idempotency WHERE tenant_id = :tenant_id AND key = :key;

-- name: insert_idempotency
INSERT INTO idempotency (tenant_id, key, request_hash, status, response, created_at)
VALUES (:tenant_id, :key, :request_hash, :status, :response, :created_at);

-- name: purge_idempotency
DELETE FROM idempotency WHERE created_at < :older_than;

-- name: insert_message
INSERT INTO messages (id, tenant_id, created_at, mail_from, message_id_header, subject, source,
                      stream, tags, metadata, size, body)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?);

-- name: insert_event
INSERT INTO events (at, tenant_id, type, message_id, recipient_idx, recipient, node_id, data)
VALUES (?, ?, ?, ?, ?, ?, ?, ?);

-- name: insert_events
-- Many events in one statement: :rows is a JSON array of the eight columns of insert_event,
-- stored in array order.
INSERT INTO events (at, tenant_id, type, message_id, recipient_idx, recipient, node_id, data)
SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5,
       value ->> 6, value ->> 7
FROM json_each(:rows)
ORDER BY key;

-- name: insert_recipient
-- No trigger counts the row: the enqueue adds it to the counts (count_states,
-- count_queued) in the same transaction.
INSERT INTO recipients (message_id, idx, tenant_id, address, domain, state, attempts, created_at,
                        next_attempt_at, expires_at, updated_at, lease_owner, lease_expires_at)
VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?);

-- name: count_states
-- Recipients just enqueued in one state.
INSERT INTO recipient_counts (state, n) VALUES (?, ?)
ON CONFLICT (state) DO UPDATE SET n = n + excluded.n;

-- name: count_queued
-- Recipients just enqueued, queued (none deferred yet) in one queue (tenant, domain).
INSERT INTO queue_counts (tenant_id, domain, queued, deferred) VALUES (?, ?, ?, 0)
ON CONFLICT (tenant_id, domain) DO UPDATE SET queued = queued + excluded.queued;

-- name: due_queues
-- One page of queues with queued recipients (in (tenant, domain) order, after :after_tenant,
-- :after_domain), none of them paused, each with the due time of its first recipient not
-- leased by :owner: one index probe per queue, whatever the depth. Leases of other nodes
-- count (their expiry is when a dead node's work comes back). One JSON array of
-- [tenant id, domain, due] in one row.
SELECT json_group_array(json_array(p.tenant_id, p.domain, p.due)) FROM (
    SELECT q.tenant_id, q.domain,
           (SELECT r.next_attempt_at FROM recipients r
            WHERE r.domain = q.domain AND r.tenant_id = q.tenant_id AND r.state = 'queued'
              AND (r.lease_owner IS NULL OR r.lease_owner <> :owner)
            ORDER BY r.next_attempt_at LIMIT 1) AS due
    FROM queue_counts q
    WHERE (q.tenant_id, q.domain) > (:after_tenant, :after_domain) AND q.queued > 0
      AND NOT EXISTS (SELECT 1 FROM queue_pauses p
                      WHERE p.domain IN (q.domain, '*') AND p.tenant_id IN (q.tenant_id, '*'))
    ORDER BY q.tenant_id, q.domain
    LIMIT :limit
) AS p;

-- name: lease_queues
-- Due recipients of the queues in :queues (a JSON array of [tenant id, domain]), at most
-- :limit of each, oldest due first, paused queues left alone: one row holding a JSON array
-- per queue (each an array of recipients), in the order of :queues. One call into SQLite
-- for many queues: each call hands the GIL to the event loop's thread and waits to get it
-- back (up to 5 ms when that thread is busy), so per-queue or per-row calls made leasing at
-- depth 5-10x slower. lease_mark then leases what this found.
SELECT json_group_array(json(q.found)) FROM (
    SELECT (SELECT json_group_array(json_array(d.message_id, d.idx, d.tenant_id, d.address,
                                               d.domain, d.attempts, d.created_at,
                                               d.expires_at))
            FROM (SELECT r.message_id, r.idx, r.tenant_id, r.address, r.domain, r.attempts,
                         r.created_at, r.expires_at
                  FROM recipients r
                  WHERE r.domain = k.value ->> 1 AND r.tenant_id = k.value ->> 0
                    AND r.state = 'queued' AND r.next_attempt_at <= :now
                    AND NOT EXISTS (SELECT 1 FROM queue_pauses p
                                    WHERE p.domain IN (r.domain, '*')
                                      AND p.tenant_id IN (r.tenant_id, '*'))
                  ORDER BY r.next_attempt_at
                  LIMIT :limit) AS d) AS found
    FROM json_each(:queues) AS k
    ORDER BY k.key
) AS q;

-- name: lease_mark
-- Lease the recipients :rows names (lease_queue's arrays, concatenated), each found by
-- its primary key. The lease moves next_attempt_at to its expiry.
UPDATE recipients
SET lease_owner = :owner, lease_expires_at = :until, next_attempt_at = :until
FROM json_each(:rows) AS u
WHERE recipients.domain = u.value ->> 4 AND recipients.tenant_id = u.value ->> 2
  AND recipients.message_id = u.value ->> 0 AND recipients.idx = u.value ->> 1;

-- name: queues_next_due
-- For each queue of :queues (as lease_queues'), when its first recipient not leased by
-- :owner falls due (null: none queued, or the queue is paused: its resume wakes it), as
-- one JSON array in the order of :queues.
SELECT json_group_array(q.due) FROM (
    SELECT (SELECT r.next_attempt_at FROM recipients r
            WHERE r.domain = k.value ->> 1 AND r.tenant_id = k.value ->> 0
              AND r.state = 'queued'
              AND (r.lease_owner IS NULL OR r.lease_owner <> :owner)
              AND NOT EXISTS (SELECT 1 FROM queue_pauses p
                              WHERE p.domain IN (r.domain, '*')
                                AND p.tenant_id IN (r.tenant_id, '*'))
            ORDER BY r.next_attempt_at LIMIT 1) AS due
    FROM json_each(:queues) AS k
    ORDER BY k.key
) AS q;

-- name: lease
-- Due recipients of one domain, every tenant's (tools and tests; the engine leases queue by
-- queue with lease_queue).
UPDATE recipients
SET lease_owner = :owner, lease_expires_at = :until, next_attempt_at = :until
WHERE (message_id, idx) IN (
    SELECT r.message_id, r.idx FROM recipients r
    WHERE r.domain = :domain AND r.state = 'queued' AND r.next_attempt_at <= :now
      AND NOT EXISTS (SELECT 1 FROM queue_pauses p
                      WHERE p.domain IN (:domain, '*') AND p.tenant_id IN (r.tenant_id, '*'))
    ORDER BY r.next_attempt_at
    LIMIT :limit
)
RETURNING message_id, idx, tenant_id, address, domain, attempts, created_at, expires_at;

-- name: lease_bodies
-- The messages :ids names, as one JSON array of [id, tenant id, mail from, body (hex),
-- Message-ID, source, stream] (one call into SQLite, not one per message).
SELECT json_group_array(json_array(id, tenant_id, mail_from, hex(body), message_id_header,
                                   source, stream))
FROM messages
WHERE id IN (SELECT value FROM json_each(:ids));

-- name: record_final
-- Delivered, bounced and expired outcomes always apply. :rows is a JSON array of
-- [message id, index, state, attempts to add, at, code, enhanced code, text, MX, domain,
-- tenant id]: one statement, one call into SQLite for a whole batch (not one per row, each
-- waiting for the GIL), each row found by its primary key.
UPDATE recipients
SET state = u.value ->> 2, attempts = attempts + (u.value ->> 3), updated_at = u.value ->> 4,
    last_code = u.value ->> 5, last_enhanced = u.value ->> 6, last_text = u.value ->> 7,
    last_mx = u.value ->> 8, lease_owner = NULL, lease_expires_at = NULL
FROM json_each(:rows) AS u
WHERE recipients.domain = u.value ->> 9 AND recipients.tenant_id = u.value ->> 10
  AND recipients.message_id = u.value ->> 0 AND recipients.idx = u.value ->> 1;

-- name: record_retry
-- Deferrals and releases only apply to a recipient that is still queued, and still leased
-- by the node the attempt ran on. :rows as record_final's, with the next attempt's time in
-- place of the state and the owner last (NULL: no owner check).
UPDATE recipients
SET next_attempt_at = u.value ->> 2, attempts = attempts + (u.value ->> 3),
    updated_at = u.value ->> 4,
    last_code = coalesce(u.value ->> 5, last_code),
    last_enhanced = coalesce(u.value ->> 6, last_enhanced),
    last_text = coalesce(u.value ->> 7, last_text), last_mx = coalesce(u.value ->> 8, last_mx),
    lease_owner = NULL, lease_expires_at = NULL
FROM json_each(:rows) AS u
WHERE recipients.domain = u.value ->> 9 AND recipients.tenant_id = u.value ->> 10
  AND recipients.message_id = u.value ->> 0 AND recipients.idx = u.value ->> 1
  AND recipients.state = 'queued'
  AND (u.value ->> 11 IS NULL OR recipients.lease_owner = u.value ->> 11);

-- name: recipient_domain
-- The domain of a recipient, for outcomes that do not name it.
SELECT domain FROM recipients WHERE message_id = ? AND idx = ?;

-- name: renew_leases
-- Extends :owner's leases of the recipients :refs names (a JSON array of [message id,
-- index]); renewed_leases then says which were still its own.
UPDATE recipients INDEXED BY recipients_message
SET lease_expires_at = :until, next_attempt_at = :until
FROM json_each(:refs) AS u
WHERE recipients.message_id = u.value ->> 0 AND recipients.idx = u.value ->> 1
  AND recipients.lease_owner = :owner AND recipients.state = 'queued';

-- name: renewed_leases
SELECT json_group_array(json_array(r.message_id, r.idx))
FROM json_each(:refs) AS u
CROSS JOIN recipients r INDEXED BY recipients_message
WHERE r.message_id = u.value ->> 0 AND r.idx = u.value ->> 1
  AND r.lease_owner = :owner AND r.state = 'queued' AND r.lease_expires_at = :until;

-- name: release_owned
UPDATE recipients SET lease_owner = NULL, lease_expires_at = NULL, next_attempt_at = :now
WHERE lease_owner = :owner AND state = 'queued';

-- name: cancel
UPDATE recipients
SET state = 'cancelled', updated_at = :now, lease_owner = NULL, lease_expires_at = NULL
WHERE message_id = :message_id AND tenant_id = :tenant_id AND state = 'queued'
RETURNING idx, address;

-- name: get_message
SELECT id, tenant_id, created_at, mail_from, subject, message_id_header, source, stream, size,
       tags, metadata, purged_at
FROM messages WHERE id = :id AND (:tenant_id IS NULL OR tenant_id = :tenant_id);

-- name: get_recipients
SELECT idx, address, domain, state, attempts, next_attempt_at, expires_at, updated_at,
       last_code, last_enhanced, last_text, last_mx, lease_owner, lease_expires_at
FROM recipients WHERE message_id = :id ORDER BY idx;

-- name: queue_page
-- One page of a tenant's queues in domain order, from the counters; age and next attempt
-- by one index probe each.
SELECT q.domain, q.queued, q.deferred,
       (SELECT r.created_at FROM recipients r INDEXED BY recipients_age
        WHERE r.domain = q.domain AND r.tenant_id = q.tenant_id AND r.state = 'queued'
        ORDER BY r.created_at LIMIT 1),
       (SELECT r.next_attempt_at FROM recipients r INDEXED BY recipients_due
        WHERE r.domain = q.domain AND r.tenant_id = q.tenant_id AND r.state = 'queued'
        ORDER BY r.next_attempt_at LIMIT 1),
       EXISTS (SELECT 1 FROM queue_pauses p
               WHERE p.domain IN (q.domain, '*') AND p.tenant_id IN (q.tenant_id, '*'))
FROM queue_counts q
WHERE q.tenant_id = :tenant_id AND q.domain > :after AND q.queued > 0
ORDER BY q.domain
LIMIT :limit;

-- name: queue_one
-- One queue of a tenant (after a pause or resume): as queue_page, by primary key.
SELECT q.domain, q.queued, q.deferred,
       (SELECT r.created_at FROM recipients r INDEXED BY recipients_age
        WHERE r.domain = q.domain AND r.tenant_id = q.tenant_id AND r.state = 'queued'
        ORDER BY r.created_at LIMIT 1),
       (SELECT r.next_attempt_at FROM recipients r INDEXED BY recipients_due
        WHERE r.domain = q.domain AND r.tenant_id = q.tenant_id AND r.state = 'queued'
        ORDER BY r.next_attempt_at LIMIT 1),
       EXISTS (SELECT 1 FROM queue_pauses p
               WHERE p.domain IN (q.domain, '*') AND p.tenant_id IN (q.tenant_id, '*'))
FROM queue_counts q
WHERE q.tenant_id = :tenant_id AND q.domain = :domain AND q.queued > 0;

-- name: queue_domains_page
-- One page of the domains with queued mail, every tenant's, in domain order.
SELECT DISTINCT domain FROM queue_counts
WHERE domain > :after AND queued > 0
ORDER BY domain
LIMIT :limit;

-- name: queue_domain_tenants
-- The queues of one domain (every tenant), as queue_page.
SELECT q.domain, q.queued, q.deferred,
       (SELECT r.created_at FROM recipients r INDEXED BY recipients_age
        WHERE r.domain = q.domain AND r.tenant_id = q.tenant_id AND r.state = 'queued'
        ORDER BY r.created_at LIMIT 1),
       (SELECT r.next_attempt_at FROM recipients r INDEXED BY recipients_due
        WHERE r.domain = q.domain AND r.tenant_id = q.tenant_id AND r.state = 'queued'
        ORDER BY r.next_attempt_at LIMIT 1),
       EXISTS (SELECT 1 FROM queue_pauses p
               WHERE p.domain IN (q.domain, '*') AND p.tenant_id IN (q.tenant_id, '*'))
FROM queue_counts q INDEXED BY queue_counts_domain
WHERE q.domain = :domain AND q.queued > 0;

-- name: domain_queues
-- Every tenant's queue of one domain, from the counters; age, next attempt and the
-- recipients due now (counted in the index, up to :cap) by index probes.
SELECT q.tenant_id, q.queued, q.deferred,
       (SELECT count(*) FROM (
            SELECT 1 FROM recipients r INDEXED BY recipients_due
            WHERE r.domain = q.domain AND r.tenant_id = q.tenant_id AND r.state = 'queued'
              AND r.next_attempt_at <= :now AND r.lease_owner IS NULL
            LIMIT :cap)),
       (SELECT r.created_at FROM recipients r INDEXED BY recipients_age
        WHERE r.domain = q.domain AND r.tenant_id = q.tenant_id AND r.state = 'queued'
        ORDER BY r.created_at LIMIT 1),
       (SELECT r.next_attempt_at FROM recipients r INDEXED BY recipients_due
        WHERE r.domain = q.domain AND r.tenant_id = q.tenant_id AND r.state = 'queued'
        ORDER BY r.next_attempt_at LIMIT 1)
FROM queue_counts q INDEXED BY queue_counts_domain
WHERE q.domain = :domain AND q.queued > 0
ORDER BY q.tenant_id;

-- name: retry_queued
-- Up to :limit queued, not leased recipients of one queue that are not due yet, due now.
UPDATE recipients SET next_attempt_at = :now, updated_at = :now
WHERE domain = :domain AND tenant_id = :tenant_id AND (message_id, idx) IN (
    SELECT message_id, idx FROM recipients INDEXED BY recipients_due
    WHERE domain = :domain AND tenant_id = :tenant_id AND state = 'queued'
      AND next_attempt_at > :now AND lease_owner IS NULL
    LIMIT :limit);

-- name: bounce_queued
-- Up to :limit queued, not leased recipients of one queue bounced by an operator (the
-- count triggers move them out of the queue counts).
UPDATE recipients
SET state = 'bounced', updated_at = :now, last_text = :text, lease_owner = NULL,
    lease_expires_at = NULL
WHERE domain = :domain AND tenant_id = :tenant_id AND (message_id, idx) IN (
    SELECT message_id, idx FROM recipients INDEXED BY recipients_due
    WHERE domain = :domain AND tenant_id = :tenant_id AND state = 'queued'
      AND lease_owner IS NULL
    LIMIT :limit)
RETURNING message_id, idx, address;

-- name: cancel_queued
-- Up to :limit queued recipients of one queue cancelled, leased ones too (the count
-- triggers move them out of the queue counts).
UPDATE recipients
SET state = 'cancelled', updated_at = :now, lease_owner = NULL, lease_expires_at = NULL
WHERE domain = :domain AND tenant_id = :tenant_id AND (message_id, idx) IN (
    SELECT message_id, idx FROM recipients INDEXED BY recipients_due
    WHERE domain = :domain AND tenant_id = :tenant_id AND state = 'queued'
    LIMIT :limit)
RETURNING message_id, idx, address;

-- name: queued_page
-- Up to :limit queued recipients of one queue after the cursor (created_at, message id,
-- index), oldest first, with their message's stream and tags and whether they are leased.
SELECT r.created_at, r.message_id, r.idx, r.lease_owner IS NOT NULL, m.stream, m.tags
FROM recipients r INDEXED BY recipients_age JOIN messages m ON m.id = r.message_id
WHERE r.domain = :domain AND r.tenant_id = :tenant_id AND r.state = 'queued'
  AND (r.created_at, r.message_id, r.idx) > (:created_at, :message_id, :idx)
ORDER BY r.created_at, r.message_id, r.idx
LIMIT :limit;

-- name: retry_listed
-- The recipients :ids names (a JSON array of [message id, index]) of one queue, queued,
-- not leased and not due yet, due now.
UPDATE recipients SET next_attempt_at = :now, updated_at = :now
WHERE domain = :domain AND tenant_id = :tenant_id
  AND (message_id, idx) IN (SELECT value ->> 0, value ->> 1 FROM json_each(:ids))
  AND state = 'queued' AND lease_owner IS NULL AND next_attempt_at > :now;

-- name: bounce_listed
-- The recipients :ids names of one queue, queued and not leased, bounced by an operator.
UPDATE recipients
SET state = 'bounced', updated_at = :now, last_text = :text, lease_owner = NULL,
    lease_expires_at = NULL
WHERE domain = :domain AND tenant_id = :tenant_id
  AND (message_id, idx) IN (SELECT value ->> 0, value ->> 1 FROM json_each(:ids))
  AND state = 'queued' AND lease_owner IS NULL
RETURNING message_id, idx, address;

-- name: queue_pauses
SELECT tenant_id, domain, paused_at, reason FROM queue_pauses ORDER BY tenant_id, domain;

-- name: queue_depths_top
-- The deepest domains (every tenant) and, as domain NULL, the total.
SELECT domain, sum(queued) AS n FROM queue_counts WHERE queued > 0
GROUP BY domain ORDER BY n DESC LIMIT :top;

-- name: queue_depth_total
SELECT coalesce(sum(queued), 0) FROM queue_counts;

-- name: queue_oldest
-- When the oldest recipient still queued for :domain (every tenant) was accepted: one
-- index probe per tenant with mail there.
SELECT min((SELECT r.created_at FROM recipients r INDEXED BY recipients_age
            WHERE r.domain = q.domain AND r.tenant_id = q.tenant_id AND r.state = 'queued'
            ORDER BY r.created_at LIMIT 1))
FROM queue_counts q WHERE q.domain = :domain AND q.queued > 0;

-- name: drop_empty_queues
-- Counter rows of queues with nothing queued (housekeeping; the triggers add them back).
DELETE FROM queue_counts WHERE queued = 0;

-- name: paused_tenant
SELECT domain, paused_at FROM queue_pauses WHERE tenant_id IN (:tenant_id, '*');

-- name: paused_all
SELECT tenant_id, domain FROM queue_pauses;

-- name: state_counts
SELECT state, n FROM recipient_counts WHERE n > 0;

-- name: pause
INSERT INTO queue_pauses (tenant_id, domain, paused_at, reason)
VALUES (:tenant_id, :domain, :now, :reason)
ON CONFLICT (tenant_id, domain) DO NOTHING;

-- name: resume
DELETE FROM queue_pauses WHERE tenant_id = :tenant_id AND domain = :domain;

-- name: lift_pause
DELETE FROM queue_pauses WHERE tenant_id = :tenant_id AND domain = :domain AND reason = :reason;

-- name: events
SELECT id, at, tenant_id, type, message_id, recipient_idx, recipient, node_id, data
FROM events
WHERE tenant_id = :tenant_id AND id > :after
  AND (:types IS NULL OR type IN (SELECT value FROM json_each(:types)))
  AND (:recipient IS NULL OR lower(recipient) = lower(:recipient))
  AND (:since IS NULL OR at >= :since)
  AND (:until IS NULL OR at < :until)
ORDER BY id
LIMIT :limit;

-- name: events_message
SELECT id, at, tenant_id, type, message_id, recipient_idx, recipient, node_id, data
FROM events
WHERE message_id = :message_id AND tenant_id = :tenant_id AND id > :after
  AND (:types IS NULL OR type IN (SELECT value FROM json_each(:types)))
  AND (:recipient IS NULL OR lower(recipient) = lower(:recipient))
  AND (:since IS NULL OR at >= :since)
  AND (:until IS NULL OR at < :until)
ORDER BY id
LIMIT :limit;

-- name: suppressed
SELECT tenant_id, address, reason, created_at, expires_at, source, detail, message_id
FROM suppressions
WHERE tenant_id IN (:tenant_id, '*')
  AND address IN (SELECT value FROM json_each(:addresses))
  AND (expires_at IS NULL OR expires_at > :now);

-- name: add_suppression
INSERT INTO suppressions (tenant_id, address, reason, created_at, expires_at, source, detail,
                          message_id)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (tenant_id, address) DO UPDATE
SET reason = excluded.reason, created_at = excluded.created_at,
    expires_at = excluded.expires_at, source = excluded.source, detail = excluded.detail,
    message_id = excluded.message_id;

-- name: remove_suppression
DELETE FROM suppressions WHERE tenant_id = :tenant_id AND address = :address;

-- name: list_suppressions
SELECT tenant_id, address, reason, created_at, expires_at, source, detail, message_id
FROM suppressions
WHERE tenant_id = :tenant_id AND address > :after
  AND (:reason IS NULL OR reason = :reason)
  AND (expires_at IS NULL OR expires_at > :now)
ORDER BY address
LIMIT :limit;

-- name: note_soft_bounce
-- A run of soft bounces: counted while they keep coming within the window.
INSERT INTO soft_bounces (tenant_id, address, count, first_at, last_at)
VALUES (:tenant_id, :address, 1, :now, :now)
ON CONFLICT (tenant_id, address) DO UPDATE
SET count = CASE WHEN soft_bounces.first_at < :now - :window THEN 1 ELSE soft_bounces.count + 1 END,
    first_at = CASE WHEN soft_bounces.first_at < :now - :window THEN :now ELSE soft_bounces.first_at END,
    last_at = :now
RETURNING count;

-- name: clear_soft_bounces
DELETE FROM soft_bounces WHERE tenant_id = ? AND address = ?;

-- name: store_inbound
INSERT INTO inbound (id, received_at, mail_from, rcpt_to, peer, body, state)
VALUES (:id, :received_at, :mail_from, :rcpt_to, :peer, :body, 'pending');

-- name: pending_inbound
-- Claims a page of pending reports until :until (a claim that lapses is taken again).
UPDATE inbound SET claimed_until = :until
WHERE id IN (SELECT id FROM inbound
             WHERE state = 'pending' AND (claimed_until IS NULL OR claimed_until < :now)
             ORDER BY received_at LIMIT :limit)
RETURNING id, received_at, mail_from, rcpt_to, peer, body, attempts;

-- name: finish_inbound
UPDATE inbound SET state = :state, processed_at = :now, result = :result,
                   attempts = attempts + 1, claimed_until = NULL
WHERE id = :id;

-- name: add_reputation_count
INSERT INTO reputation_counts (tenant_id, stream, bucket, delivered, bounced, complained)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (tenant_id, stream, bucket) DO UPDATE
SET delivered = delivered + excluded.delivered, bounced = bounced + excluded.bounced,
    complained = complained + excluded.complained;

-- name: reputation_totals
-- Buckets from :since on, and none before the tenant's judged_since (set at a resume).
SELECT c.tenant_id, c.stream, sum(c.delivered), sum(c.bounced), sum(c.complained)
FROM reputation_counts c LEFT JOIN tenant_status s ON s.tenant_id = c.tenant_id
WHERE c.bucket >= :since AND (:tenant_id IS NULL OR c.tenant_id = :tenant_id)
  AND c.bucket >= coalesce(s.judged_since, 0)
GROUP BY c.tenant_id, c.stream
ORDER BY c.tenant_id, c.stream;

-- name: purge_reputation_counts
DELETE FROM reputation_counts WHERE bucket < :older_than;

-- name: tenant_statuses
SELECT tenant_id, status, reason, changed_at, changed_by, judged_since FROM tenant_status
WHERE :tenant_id IS NULL OR tenant_id = :tenant_id
ORDER BY tenant_id;

-- name: tenant_status_of
SELECT status FROM tenant_status WHERE tenant_id = :tenant_id;

-- name: set_tenant_status
INSERT INTO tenant_status (tenant_id, status, reason, changed_at, changed_by, judged_since)
VALUES (:tenant_id, :status, :reason, :changed_at, :changed_by, :judged_since)
ON CONFLICT (tenant_id) DO UPDATE
SET status = excluded.status, reason = excluded.reason, changed_at = excluded.changed_at,
    changed_by = excluded.changed_by, judged_since = excluded.judged_since;

-- name: hold_tenant
-- A paused tenant: every one of its queues is held (domain '*').
INSERT INTO queue_pauses (tenant_id, domain, paused_at, reason)
VALUES (:tenant_id, '*', :changed_at, :reason)
ON CONFLICT (tenant_id, domain) DO UPDATE SET reason = excluded.reason;

-- name: lift_tenant_hold
DELETE FROM queue_pauses WHERE tenant_id = :tenant_id AND domain = '*';

-- name: add_sender_domain
INSERT INTO sender_domains (tenant_id, domain, created_at, status, verified_at, checked_at,
                            check_result)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (tenant_id, domain) DO NOTHING;

-- name: add_dkim_key
INSERT INTO dkim_keys (tenant_id, domain, selector, algorithm, public_key, private_sealed,
                       created_at, state)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (tenant_id, domain, selector) DO NOTHING;

-- name: get_sender_domains
SELECT tenant_id, domain, created_at, status, verified_at, checked_at, check_result
FROM sender_domains
WHERE (:tenant_id IS NULL OR tenant_id = :tenant_id)
  AND (:domain IS NULL OR domain = :domain)
ORDER BY tenant_id, domain;

-- name: get_dkim_keys
SELECT tenant_id, domain, selector, algorithm, public_key, private_sealed, created_at, state
FROM dkim_keys
WHERE (:tenant_id IS NULL OR tenant_id = :tenant_id)
  AND (:domain IS NULL OR domain = :domain)
ORDER BY tenant_id, domain, created_at, selector;

-- name: update_sender_domain
UPDATE sender_domains
SET status = :status, checked_at = :checked_at, verified_at = :verified_at,
    check_result = :check
WHERE tenant_id = :tenant_id AND domain = :domain;

-- name: set_dkim_key_state
UPDATE dkim_keys SET state = :state
WHERE tenant_id = :tenant_id AND domain = :domain AND selector = :selector;

-- name: remove_sender_domain
DELETE FROM sender_domains WHERE tenant_id = :tenant_id AND domain = :domain;

-- name: remove_dkim_keys
DELETE FROM dkim_keys WHERE tenant_id = :tenant_id AND domain = :domain;

-- name: suppressed_one
SELECT tenant_id, address, reason, created_at, expires_at, source, detail, message_id
FROM suppressions
WHERE tenant_id IN (:tenant_id, '*') AND address = :address
  AND (expires_at IS NULL OR expires_at > :now);

-- name: any_soft_bounces
SELECT EXISTS (SELECT 1 FROM soft_bounces);

-- name: add_admin_token
INSERT INTO admin_tokens (id, name, token_hash, prefix, created_at)
VALUES (:id, :name, :token_hash, :prefix, :created_at);

-- name: admin_tokens
SELECT id, name, prefix, created_at, last_used_at, revoked_at FROM admin_tokens
ORDER BY created_at, id;

-- name: admin_token_for_hash
SELECT id, name, prefix, created_at, last_used_at, revoked_at FROM admin_tokens
WHERE token_hash = :token_hash AND revoked_at IS NULL;

-- name: touch_admin_token
UPDATE admin_tokens SET last_used_at = :now WHERE id = :id;

-- name: revoke_admin_token
UPDATE admin_tokens SET revoked_at = :now WHERE id = :id AND revoked_at IS NULL;

-- name: append_audit
INSERT INTO audit_log (at, actor_kind, actor_id, tenant_id, action, target, request_id, detail)
VALUES (:at, :actor_kind, :actor_id, :tenant_id, :action, :target, :request_id, :detail);

-- name: audit_entries
-- One page in id order after :after; every tenant's (and none's) when :tenant_id is NULL.
SELECT id, at, actor_kind, actor_id, tenant_id, action, target, request_id, detail
FROM audit_log
WHERE id > :after AND (:tenant_id IS NULL OR tenant_id = :tenant_id)
ORDER BY id LIMIT :limit;

-- name: add_activity
INSERT INTO activity_counts (bucket, accepted, delivered, deferred, bounced, complained)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (bucket) DO UPDATE
SET accepted = accepted + excluded.accepted, delivered = delivered + excluded.delivered,
    deferred = deferred + excluded.deferred, bounced = bounced + excluded.bounced,
    complained = complained + excluded.complained;

-- name: activity
SELECT bucket, accepted, delivered, deferred, bounced, complained FROM activity_counts
WHERE bucket >= :since ORDER BY bucket;

-- name: purge_activity
DELETE FROM activity_counts WHERE bucket < :older_than;

-- name: find_messages
-- The latest :scan messages by the creation-time index, each probed for the recipient.
SELECT m.id FROM (
    SELECT id, tags, created_at FROM messages ORDER BY created_at DESC LIMIT :scan
) m
WHERE (:tag IS NULL OR EXISTS (SELECT 1 FROM json_each(m.tags) t WHERE t.value = :tag))
  AND (:recipient IS NULL OR EXISTS (
      SELECT 1 FROM recipients r
      WHERE r.message_id = m.id AND r.address = :recipient COLLATE NOCASE))
ORDER BY m.created_at DESC
LIMIT :limit;

-- name: add_reroute
-- A reroute replaces the one with the same domain and provider.
INSERT INTO reroutes (id, domain, provider, host, port, created_at, until, reason)
VALUES (:id, :domain, :provider, :host, :port, :created_at, :until, :reason)
ON CONFLICT (domain, provider) DO UPDATE SET
    id = excluded.id, host = excluded.host, port = excluded.port,
    created_at = excluded.created_at, until = excluded.until, reason = excluded.reason;

-- name: reroutes
SELECT id, domain, provider, host, port, created_at, until, reason FROM reroutes
ORDER BY created_at, id;

-- name: remove_reroute
DELETE FROM reroutes WHERE id = :id
RETURNING id, domain, provider, host, port, created_at, until, reason;
