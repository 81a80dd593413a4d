-- postline PostgreSQL schema (fresh install). Applying migrations/0001.. in order to an empty
-- database must lead to exactly this (tests/migration checks the catalogs).
--
-- Times are epoch seconds (double precision), as in the Store interface.
--
-- Distribution on Citus (same tables, same queries):
--   recipients     create_distributed_table('recipients', 'domain'): the distribution column
--                  is the partition key, so a lease and a due-domain probe are single-shard
--                  router queries. Citus takes the hash-partitioned table as it is (each
--                  partition becomes a colocated distributed table); the local partitions
--                  are then redundant with the shards and may be left out.
--   queue_counts, queue_count_deltas  distributed by 'domain', colocate_with => 'recipients':
--                  due_queues probes each queue's recipients shard locally.
--   messages       distributed by 'id': a message's recipients span domains, so it cannot
--                  be colocated with them; a lease reads bodies by id = ANY(...) in a second
--                  statement (pruned to the shards holding those ids), never in a join.
--   events, idempotency  distributed by 'tenant_id', colocated with each other.
--   tenants, api_keys, queue_pauses, tenant_status, postline_schema, recipient_counts,
--                  recipient_count_deltas, admin_tokens, audit_log, activity_counts,
--                  reroutes  reference tables (small, replicated).
--   reputation_counts  distributed by 'tenant_id'.
-- An enqueue then writes several shards in one distributed transaction (2PC). An outcome
-- (record) does not carry the domain, so it probes every recipients shard by message_id;
-- with the domain in the outcome it would be a router query too.

CREATE TABLE postline_schema (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version    integer NOT NULL
);
INSERT INTO postline_schema (version) VALUES (15);

-- rate_limit (recipients per second), rate_burst, daily_quota, monthly_quota: the tenant's
-- own limits; NULL = the [limits] default, 0 = unlimited. deleted_at: when an operator
-- deleted the tenant (the row stays as a tombstone; its name is not reused).
CREATE TABLE tenants (
    id             text PRIMARY KEY,
    name           text NOT NULL UNIQUE,
    created_at     double precision NOT NULL,
    rate_limit     integer,
    rate_burst     integer,
    daily_quota    bigint,
    monthly_quota  bigint,
    deleted_at     double precision
);

-- Accepted recipients per tenant and UTC day ('YYYY-MM-DD'), counted in the transaction
-- of the enqueue; a month is the sum of its days. An enqueue with a quota locks its rows
-- first (lock_usage), so the check and the count are exact across nodes.
CREATE TABLE tenant_usage (
    tenant_id   text NOT NULL,
    day         text NOT NULL,
    recipients  bigint NOT NULL,
    PRIMARY KEY (tenant_id, day)
);

-- scopes: the key's scopes separated by spaces; NULL = every tenant scope. rate_limit and
-- rate_burst: the key's own rate limit (NULL = the [limits] key default, 0 = none).
CREATE TABLE api_keys (
    id            text PRIMARY KEY,
    tenant_id     text NOT NULL REFERENCES tenants (id),
    key_hash      text NOT NULL UNIQUE,
    prefix        text NOT NULL,
    created_at    double precision NOT NULL,
    revoked_at    double precision,
    name          text NOT NULL DEFAULT '',
    scopes        text,
    last_used_at  double precision,
    rate_limit    integer,
    rate_burst    integer
);

-- One row per message; the body is stored once however many recipients it has.
CREATE TABLE messages (
    id                 text PRIMARY KEY,
    tenant_id          text NOT NULL,
    created_at         double precision NOT NULL,
    mail_from          text NOT NULL,
    message_id_header  text NOT NULL,
    subject            text NOT NULL,
    source             text NOT NULL,
    stream             text NOT NULL,
    tags               jsonb NOT NULL,
    metadata           jsonb NOT NULL,
    size               integer NOT NULL,
    body               bytea NOT NULL,
    purged_at          double precision
);
CREATE INDEX messages_tenant ON messages (tenant_id, created_at);
-- The oldest messages first, for the cleaner (retention); those whose body is still here.
CREATE INDEX messages_created ON messages (created_at);
CREATE INDEX messages_unpurged ON messages (created_at) WHERE purged_at IS NULL;

-- The queue: one row per recipient, hash-partitioned by recipient domain (16 partitions).
-- state: queued | delivered | bounced | expired | cancelled. A lease moves next_attempt_at
-- to the lease expiry, so an abandoned lease becomes due again. The primary key holds the
-- partition key; lookups by (message_id, idx) use its prefix in every partition.
CREATE TABLE recipients (
    message_id        text NOT NULL,
    idx               integer NOT NULL,
    tenant_id         text NOT NULL,
    address           text NOT NULL,
    domain            text NOT NULL,
    state             text NOT NULL
        CHECK (state IN ('queued', 'delivered', 'bounced', 'expired', 'cancelled',
                         'suppressed')),
    attempts          integer NOT NULL DEFAULT 0,
    created_at        double precision NOT NULL,
    next_attempt_at   double precision NOT NULL,
    expires_at        double precision NOT NULL,
    updated_at        double precision NOT NULL,
    last_code         integer,
    last_enhanced     text,
    last_text         text,
    last_mx           text,
    lease_owner       text,
    lease_expires_at  double precision,
    PRIMARY KEY (message_id, idx, domain)
) PARTITION BY HASH (domain);

DO $$
BEGIN
    FOR i IN 0..15 LOOP
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF recipients FOR VALUES WITH (MODULUS 16, REMAINDER %s)',
            'recipients_p' || lpad(i::text, 2, '0'), i);
    END LOOP;
END
$$;

-- A queue is one tenant's recipients in one domain: leased oldest due first, and its next
-- due time read from the index alone (lease_owner is in it).
CREATE INDEX recipients_due ON recipients (domain, tenant_id, next_attempt_at, lease_owner)
    WHERE state = 'queued';
-- The oldest queued recipient of a queue, for queue views.
CREATE INDEX recipients_age ON recipients (domain, tenant_id, created_at) WHERE state = 'queued';
CREATE INDEX recipients_owner ON recipients (lease_owner) WHERE lease_owner IS NOT NULL;

-- Append-only event log; id is the cursor. Partitioned by time: a partition per UTC day
-- (events_pNNNNNNNNNN, NNN its first second), made ahead and dropped whole once past
-- [retention] events by the store (postgres/retention.py); the default partition takes
-- what falls outside them.
CREATE TABLE events (
    id             bigint GENERATED ALWAYS AS IDENTITY,
    at             double precision NOT NULL,
    tenant_id      text NOT NULL,
    type           text NOT NULL,
    message_id     text,
    recipient_idx  integer,
    recipient      text,
    node_id        text,
    data           jsonb NOT NULL,
    PRIMARY KEY (id, at)
) PARTITION BY RANGE (at);
CREATE INDEX events_tenant ON events (tenant_id, id);
CREATE INDEX events_message ON events (message_id, id);
CREATE TABLE events_default PARTITION OF events DEFAULT;

CREATE TABLE idempotency (
    tenant_id     text NOT NULL,
    key           text NOT NULL,
    request_hash  text NOT NULL,
    status        integer NOT NULL,
    response      text NOT NULL,
    created_at    double precision NOT NULL,
    PRIMARY KEY (tenant_id, key)
);
CREATE INDEX idempotency_age ON idempotency (created_at);

-- Paused (tenant, domain) queues; tenant_id '*' pauses a domain for every tenant,
-- domain '*' every domain of a tenant (a reputation pause, see tenant_status).
CREATE TABLE queue_pauses (
    tenant_id  text NOT NULL,
    domain     text NOT NULL,
    paused_at  double precision NOT NULL,
    reason     text NOT NULL,
    PRIMARY KEY (tenant_id, domain)
);

-- Queued recipients per queue (tenant, domain) and recipients per state. Statement triggers
-- on recipients append what each statement changed to the *_deltas tables (inserts only:
-- nodes never wait for each other on a hot counter row); fold_counts moves the deltas into
-- the totals every few seconds. A count is its total plus its pending deltas. On Citus:
-- queue_counts and its deltas distributed by 'domain' with recipients; recipient_counts and
-- its deltas reference tables.
CREATE TABLE queue_counts (
    tenant_id  text NOT NULL,
    domain     text NOT NULL,
    queued     bigint NOT NULL,
    deferred   bigint NOT NULL,
    PRIMARY KEY (tenant_id, domain)
);
CREATE INDEX queue_counts_domain ON queue_counts (domain);

CREATE TABLE queue_count_deltas (
    tenant_id  text NOT NULL,
    domain     text NOT NULL,
    queued     bigint NOT NULL,
    deferred   bigint NOT NULL
);
CREATE INDEX queue_count_deltas_queue ON queue_count_deltas (tenant_id, domain);
CREATE INDEX queue_count_deltas_domain ON queue_count_deltas (domain);

CREATE TABLE recipient_counts (
    state  text PRIMARY KEY,
    n      bigint NOT NULL
);

CREATE TABLE recipient_count_deltas (
    state  text NOT NULL,
    n      bigint NOT NULL
);

CREATE FUNCTION recipients_count_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO queue_count_deltas (tenant_id, domain, queued, deferred)
    SELECT n.tenant_id, n.domain, count(*), count(*) FILTER (WHERE n.attempts > 0)
    FROM new_rows n WHERE n.state = 'queued'
    GROUP BY n.tenant_id, n.domain;
    INSERT INTO recipient_count_deltas (state, n)
    SELECT n.state, count(*) FROM new_rows n GROUP BY n.state;
    RETURN NULL;
END
$$;

CREATE FUNCTION recipients_count_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- What a statement changed is what its new rows count less what its old rows counted:
    -- no join of old and new rows (rows left alone cancel out), so the cost is linear in
    -- the rows updated whatever plan is cached.
    WITH d AS (
        SELECT n.tenant_id, n.domain, n.state, n.attempts > 0 AS retried, 1 AS n
        FROM new_rows n
        UNION ALL
        SELECT o.tenant_id, o.domain, o.state, o.attempts > 0, -1 FROM old_rows o
    ), q AS (
        INSERT INTO queue_count_deltas (tenant_id, domain, queued, deferred)
        SELECT d.tenant_id, d.domain, sum(d.n), coalesce(sum(d.n) FILTER (WHERE d.retried), 0)
        FROM d WHERE d.state = 'queued'
        GROUP BY d.tenant_id, d.domain
        HAVING sum(d.n) <> 0 OR coalesce(sum(d.n) FILTER (WHERE d.retried), 0) <> 0
    )
    INSERT INTO recipient_count_deltas (state, n)
    SELECT d.state, sum(d.n) FROM d GROUP BY d.state HAVING sum(d.n) <> 0;
    RETURN NULL;
END
$$;

CREATE FUNCTION recipients_count_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO queue_count_deltas (tenant_id, domain, queued, deferred)
    SELECT o.tenant_id, o.domain, -count(*), -count(*) FILTER (WHERE o.attempts > 0)
    FROM old_rows o WHERE o.state = 'queued'
    GROUP BY o.tenant_id, o.domain;
    INSERT INTO recipient_count_deltas (state, n)
    SELECT o.state, -count(*) FROM old_rows o GROUP BY o.state;
    RETURN NULL;
END
$$;

CREATE TRIGGER recipients_count_insert AFTER INSERT ON recipients
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION recipients_count_insert();
CREATE TRIGGER recipients_count_update AFTER UPDATE ON recipients
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION recipients_count_update();
CREATE TRIGGER recipients_count_delete AFTER DELETE ON recipients
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION recipients_count_delete();

-- Addresses a tenant (tenant_id '*': every tenant) must not mail; lower-cased. On Citus:
-- distributed on tenant_id.
CREATE TABLE suppressions (
    tenant_id   text NOT NULL,
    address     text NOT NULL,
    reason      text NOT NULL,
    created_at  double precision NOT NULL,
    expires_at  double precision,
    source      text NOT NULL,
    detail      text NOT NULL,
    message_id  text,
    PRIMARY KEY (tenant_id, address)
);

-- Runs of soft bounces per address, for the "N in M days" suppression rule.
CREATE TABLE soft_bounces (
    tenant_id  text NOT NULL,
    address    text NOT NULL,
    count      integer NOT NULL,
    first_at   double precision NOT NULL,
    last_at    double precision NOT NULL,
    PRIMARY KEY (tenant_id, address)
);

-- Reports (DSNs, complaints, auto-replies) received by the inbound servers, kept before
-- the 250 and processed afterwards by whichever node claims them.
CREATE TABLE inbound (
    id             text PRIMARY KEY,
    received_at    double precision NOT NULL,
    mail_from      text NOT NULL,
    rcpt_to        text[] NOT NULL,
    peer           text NOT NULL,
    body           bytea NOT NULL,
    state          text NOT NULL,
    attempts       integer NOT NULL DEFAULT 0,
    claimed_until  double precision,
    processed_at   double precision,
    result         text
);
CREATE INDEX inbound_pending ON inbound (received_at) WHERE state = 'pending';
CREATE INDEX inbound_done ON inbound (received_at) WHERE state <> 'pending';

-- Outcomes per tenant, stream and time bucket: sums, added to by every node. On Citus:
-- distributed on tenant_id.
CREATE TABLE reputation_counts (
    tenant_id   text NOT NULL,
    stream      text NOT NULL,
    bucket      double precision NOT NULL,
    delivered   integer NOT NULL DEFAULT 0,
    bounced     integer NOT NULL DEFAULT 0,
    complained  integer NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, stream, bucket)
);
CREATE INDEX reputation_counts_bucket ON reputation_counts (bucket);

-- A tenant's reputation status (no row: 'ok'). A paused tenant's queues are held by a
-- queue_pauses row with domain '*', written in the same transaction. On Citus: a reference
-- table.
CREATE TABLE tenant_status (
    tenant_id     text PRIMARY KEY,
    status        text NOT NULL CHECK (status IN ('ok', 'warned', 'paused')),
    reason        text NOT NULL,
    changed_at    double precision NOT NULL,
    changed_by    text NOT NULL,
    judged_since  double precision NOT NULL
);

-- Domains a tenant sends from, with the last check of their DNS records.
CREATE TABLE sender_domains (
    tenant_id    text NOT NULL,
    domain       text NOT NULL,
    created_at   double precision NOT NULL,
    status       text NOT NULL,
    verified_at  double precision,
    checked_at   double precision,
    check_result text NOT NULL,
    PRIMARY KEY (tenant_id, domain)
);

-- DKIM keys of sender domains; private keys sealed (AES-256-GCM) with the node's secret.
CREATE TABLE dkim_keys (
    tenant_id      text NOT NULL,
    domain         text NOT NULL,
    selector       text NOT NULL,
    algorithm      text NOT NULL,
    public_key     text NOT NULL,
    private_sealed bytea NOT NULL,
    created_at     double precision NOT NULL,
    state          text NOT NULL,
    PRIMARY KEY (tenant_id, domain, selector)
);

-- Tenants' webhook endpoints (leased to the node sending their events) and the log of
-- the batches sent to them.
CREATE TABLE webhooks (
    id                text PRIMARY KEY,
    tenant_id         text NOT NULL,
    url               text NOT NULL,
    events            jsonb NOT NULL,
    description       text NOT NULL,
    batch_size        integer NOT NULL,
    secret            text NOT NULL,
    old_secret        text,
    old_secret_until  double precision,
    status            text NOT NULL,
    disabled_reason   text NOT NULL,
    created_at        double precision NOT NULL,
    updated_at        double precision NOT NULL,
    cursor            bigint NOT NULL,
    batch_id          text,
    batch_last        bigint,
    batch_started     double precision,
    attempts          integer NOT NULL,
    next_attempt_at   double precision NOT NULL,
    lease_owner       text,
    lease_until       double precision
);
CREATE INDEX webhooks_tenant ON webhooks (tenant_id, created_at);

CREATE TABLE webhook_deliveries (
    id             text PRIMARY KEY,
    webhook_id     text NOT NULL,
    tenant_id      text NOT NULL,
    status         text NOT NULL,
    first_event    bigint NOT NULL,
    last_event     bigint NOT NULL,
    count          integer NOT NULL,
    attempts       integer NOT NULL,
    created_at     double precision NOT NULL,
    updated_at     double precision NOT NULL,
    response_code  integer,
    latency_ms     double precision,
    error          text NOT NULL
);
CREATE INDEX webhook_deliveries_hook ON webhook_deliveries (webhook_id, updated_at);
CREATE INDEX webhook_deliveries_age ON webhook_deliveries (updated_at);

-- Admin tokens (only their SHA-256) and the audit log of operator and tenant actions.
CREATE TABLE admin_tokens (
    id            text PRIMARY KEY,
    name          text NOT NULL,
    token_hash    text NOT NULL UNIQUE,
    prefix        text NOT NULL,
    created_at    double precision NOT NULL,
    last_used_at  double precision,
    revoked_at    double precision
);

CREATE TABLE audit_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          double precision NOT NULL,
    actor_kind  text NOT NULL,
    actor_id    text NOT NULL,
    tenant_id   text,
    action      text NOT NULL,
    target      text NOT NULL,
    request_id  text NOT NULL,
    detail      jsonb NOT NULL
);
CREATE INDEX audit_log_tenant ON audit_log (tenant_id, id);

-- Traffic per minute over every tenant (the operator dashboard's charts): sums, added to
-- by every node. On Citus: a reference table (one small row a minute).
CREATE TABLE activity_counts (
    bucket      double precision PRIMARY KEY,
    accepted    integer NOT NULL DEFAULT 0,
    delivered   integer NOT NULL DEFAULT 0,
    deferred    integer NOT NULL DEFAULT 0,
    bounced     integer NOT NULL DEFAULT 0,
    complained  integer NOT NULL DEFAULT 0
);

-- Operators' temporary static routes (POST /admin/v1/queues/reroute): mail to domain (or to
-- every domain whose MX hosts match the throttle rule provider; the other one is '') goes to
-- host:port until the time in until. Every node reads the table at each queue scan.
CREATE TABLE reroutes (
    id          text PRIMARY KEY,
    domain      text NOT NULL,
    provider    text NOT NULL,
    host        text NOT NULL,
    port        integer NOT NULL,
    created_at  double precision NOT NULL,
    until       double precision NOT NULL,
    reason      text NOT NULL,
    UNIQUE (domain, provider)
);
