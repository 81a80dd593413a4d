-- postline SQLite schema (fresh install). Migrations in migrations/ must lead to the same.
PRAGMA user_version = 16;

-- rate_limit (recipients per second), rate_burst, daily_quota, monthly_quota: the tenant's
-- own limits; NULL = the [limits] default, 0 = unlimited. deleted_at: when an operator
-- deleted the tenant (the row stays as a tombstone; its name is not reused).
CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  REAL NOT NULL,
    rate_limit INTEGER,
    rate_burst INTEGER,
    daily_quota INTEGER,
    monthly_quota INTEGER,
    deleted_at REAL
);

-- Accepted recipients per tenant and UTC day ('YYYY-MM-DD'), counted in the transaction
-- of the enqueue; a month is the sum of its days.
CREATE TABLE tenant_usage (
    tenant_id   TEXT NOT NULL,
    day         TEXT NOT NULL,
    recipients  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, day)
) WITHOUT ROWID;

-- scopes: the key's scopes separated by spaces; NULL = every tenant scope. rate_limit and
-- rate_burst: the key's own rate limit (NULL = the [limits] key default, 0 = none).
CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants(id),
    key_hash      TEXT NOT NULL UNIQUE,
    prefix        TEXT NOT NULL,
    created_at    REAL NOT NULL,
    revoked_at    REAL,
    name          TEXT NOT NULL DEFAULT '',
    scopes        TEXT,
    last_used_at  REAL,
    rate_limit INTEGER,
    rate_burst INTEGER
);

-- One row per message; the body is stored once however many recipients it has.
CREATE TABLE messages (
    id                 TEXT PRIMARY KEY,
    tenant_id          TEXT NOT NULL,
    created_at         REAL NOT NULL,
    mail_from          TEXT NOT NULL,
    message_id_header  TEXT NOT NULL,
    subject            TEXT NOT NULL,
    source             TEXT NOT NULL,
    stream             TEXT NOT NULL,
    tags               TEXT NOT NULL,
    metadata           TEXT NOT NULL,
    size               INTEGER NOT NULL,
    body               BLOB NOT NULL,
    purged_at          REAL
);
CREATE INDEX messages_tenant ON messages (tenant_id, created_at);
-- The oldest messages first, for the cleaner (retention); those whose body is still here.
CREATE INDEX messages_created ON messages (created_at);
CREATE INDEX messages_unpurged ON messages (created_at) WHERE purged_at IS NULL;

-- The queue: one row per recipient, stored in queue order (tenant's mail to one domain,
-- then message), so leasing a queue and recording its outcomes touch a few neighbouring
-- pages, not one page per recipient, however deep the queue. A recipient is also found by
-- (message_id, idx). state: queued | delivered | bounced | expired | cancelled |
-- suppressed. A lease moves next_attempt_at to the lease expiry, so an abandoned lease
-- becomes due again.
CREATE TABLE recipients (
    message_id        TEXT NOT NULL,
    idx               INTEGER NOT NULL,
    tenant_id         TEXT NOT NULL,
    address           TEXT NOT NULL,
    domain            TEXT NOT NULL,
    state             TEXT NOT NULL,
    attempts          INTEGER NOT NULL DEFAULT 0,
    created_at        REAL NOT NULL,
    next_attempt_at   REAL NOT NULL,
    expires_at        REAL NOT NULL,
    updated_at        REAL NOT NULL,
    last_code         INTEGER,
    last_enhanced     TEXT,
    last_text         TEXT,
    last_mx           TEXT,
    lease_owner       TEXT,
    lease_expires_at  REAL,
    PRIMARY KEY (domain, tenant_id, message_id, idx)
) WITHOUT ROWID;
CREATE UNIQUE INDEX recipients_message ON recipients (message_id, idx);
CREATE INDEX recipients_owner ON recipients (lease_owner) WHERE lease_owner IS NOT NULL;
-- A queue is one tenant's recipients in one domain: leased oldest due first, and its next
-- due time read without touching the table (lease_owner is in the index).
CREATE INDEX recipients_due ON recipients (domain, tenant_id, next_attempt_at, lease_owner)
    WHERE state = 'queued';
-- The oldest queued recipient of a queue, for queue views.
CREATE INDEX recipients_age ON recipients (domain, tenant_id, created_at) WHERE state = 'queued';

-- Queued recipients per queue (tenant, domain) and recipients per state, kept in the
-- transactions that change them: views, metrics and the queue scan read these instead of
-- counting rows. New recipients are counted by the enqueue that inserts them (one upsert
-- per state and per queue for a whole batch, not a trigger run per row: that doubled the
-- cost of each insert); the triggers below count changes and deletions.
CREATE TABLE queue_counts (
    tenant_id  TEXT NOT NULL,
    domain     TEXT NOT NULL,
    queued     INTEGER NOT NULL,
    deferred   INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, domain)
) WITHOUT ROWID;
CREATE INDEX queue_counts_domain ON queue_counts (domain);

CREATE TABLE recipient_counts (
    state  TEXT PRIMARY KEY,
    n      INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TRIGGER recipients_count_update AFTER UPDATE OF state, attempts ON recipients
WHEN old.state <> new.state OR (new.state = 'queued' AND (old.attempts > 0) <> (new.attempts > 0))
BEGIN
    UPDATE recipient_counts SET n = n - 1 WHERE state = old.state AND old.state <> new.state;
    INSERT INTO recipient_counts (state, n) SELECT new.state, 1 WHERE old.state <> new.state
    ON CONFLICT (state) DO UPDATE SET n = n + 1;
    INSERT INTO queue_counts (tenant_id, domain, queued, deferred)
    SELECT new.tenant_id, new.domain, (new.state = 'queued') - (old.state = 'queued'),
           (new.state = 'queued' AND new.attempts > 0) - (old.state = 'queued' AND old.attempts > 0)
    WHERE old.state = 'queued' OR new.state = 'queued'
    ON CONFLICT (tenant_id, domain) DO UPDATE
    SET queued = queued + excluded.queued, deferred = deferred + excluded.deferred;
END;

CREATE TRIGGER recipients_count_delete AFTER DELETE ON recipients
BEGIN
    UPDATE recipient_counts SET n = n - 1 WHERE state = old.state;
    UPDATE queue_counts
    SET queued = queued - 1, deferred = deferred - (old.attempts > 0)
    WHERE old.state = 'queued' AND tenant_id = old.tenant_id AND domain = old.domain;
END;

-- Append-only event log; id is the cursor.
CREATE TABLE events (
    id             INTEGER PRIMARY KEY,
    at             REAL NOT NULL,
    tenant_id      TEXT NOT NULL,
    type           TEXT NOT NULL,
    message_id     TEXT,
    recipient_idx  INTEGER,
    recipient      TEXT,
    node_id        TEXT,
    data           TEXT NOT NULL
);
CREATE INDEX events_tenant ON events (tenant_id, id);
CREATE INDEX events_message ON events (message_id, id);

CREATE TABLE idempotency (
    tenant_id     TEXT NOT NULL,
    key           TEXT NOT NULL,
    request_hash  TEXT NOT NULL,
    status        INTEGER NOT NULL,
    response      TEXT NOT NULL,
    created_at    REAL NOT NULL,
    PRIMARY KEY (tenant_id, key)
) WITHOUT ROWID;
CREATE INDEX idempotency_age ON idempotency (created_at);

-- Paused (tenant, domain) queues; tenant_id '*' pauses a domain for every tenant,
-- domain '*' every domain of a tenant (a reputation pause, see tenant_status).
CREATE TABLE queue_pauses (
    tenant_id  TEXT NOT NULL,
    domain     TEXT NOT NULL,
    paused_at  REAL NOT NULL,
    reason     TEXT NOT NULL,
    PRIMARY KEY (tenant_id, domain)
) WITHOUT ROWID;

-- Addresses a tenant (tenant_id '*': every tenant) must not mail; lower-cased.
CREATE TABLE suppressions (
    tenant_id   TEXT NOT NULL,
    address     TEXT NOT NULL,
    reason      TEXT NOT NULL,
    created_at  REAL NOT NULL,
    expires_at  REAL,
    source      TEXT NOT NULL,
    detail      TEXT NOT NULL,
    message_id  TEXT,
    PRIMARY KEY (tenant_id, address)
) WITHOUT ROWID;

-- Runs of soft bounces per address, for the "N in M days" suppression rule.
CREATE TABLE soft_bounces (
    tenant_id  TEXT NOT NULL,
    address    TEXT NOT NULL,
    count      INTEGER NOT NULL,
    first_at   REAL NOT NULL,
    last_at    REAL NOT NULL,
    PRIMARY KEY (tenant_id, address)
) WITHOUT ROWID;

-- Reports (DSNs, complaints, auto-replies) received by the inbound server, kept before
-- the 250 and processed afterwards.
CREATE TABLE inbound (
    id            TEXT PRIMARY KEY,
    received_at   REAL NOT NULL,
    mail_from     TEXT NOT NULL,
    rcpt_to       TEXT NOT NULL,
    peer          TEXT NOT NULL,
    body          BLOB NOT NULL,
    state         TEXT NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    claimed_until REAL,
    processed_at  REAL,
    result        TEXT
);
CREATE INDEX inbound_pending ON inbound (received_at) WHERE state = 'pending';

-- Outcomes per tenant, stream and time bucket: sums, added to by every writer.
CREATE TABLE reputation_counts (
    tenant_id   TEXT NOT NULL,
    stream      TEXT NOT NULL,
    bucket      REAL NOT NULL,
    delivered   INTEGER NOT NULL DEFAULT 0,
    bounced     INTEGER NOT NULL DEFAULT 0,
    complained  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, stream, bucket)
) WITHOUT ROWID;
CREATE INDEX reputation_counts_bucket ON reputation_counts (bucket);

-- A tenant's reputation status (no row: 'ok'). A paused tenant's queues are held by a
-- queue_pauses row with domain '*', written in the same transaction.
CREATE TABLE tenant_status (
    tenant_id     TEXT PRIMARY KEY,
    status        TEXT NOT NULL,
    reason        TEXT NOT NULL,
    changed_at    REAL NOT NULL,
    changed_by    TEXT NOT NULL,
    judged_since  REAL NOT NULL
) WITHOUT ROWID;

-- Domains a tenant sends from, with the last check of their DNS records.
CREATE TABLE sender_domains (
    tenant_id    TEXT NOT NULL,
    domain       TEXT NOT NULL,
    created_at   REAL NOT NULL,
    status       TEXT NOT NULL,
    verified_at  REAL,
    checked_at   REAL,
    check_result TEXT NOT NULL,
    PRIMARY KEY (tenant_id, domain)
) WITHOUT ROWID;

-- DKIM keys of sender domains; private keys sealed (AES-256-GCM) with the node's secret.
CREATE TABLE dkim_keys (
    tenant_id      TEXT NOT NULL,
    domain         TEXT NOT NULL,
    selector       TEXT NOT NULL,
    algorithm      TEXT NOT NULL,
    public_key     TEXT NOT NULL,
    private_sealed BLOB NOT NULL,
    created_at     REAL NOT NULL,
    state          TEXT NOT NULL,
    PRIMARY KEY (tenant_id, domain, selector)
) WITHOUT ROWID;

-- Tenants' webhook endpoints (leased to the node sending their events) and the log of
-- the batches sent to them.
CREATE TABLE webhooks (
    id                TEXT PRIMARY KEY,
    tenant_id         TEXT NOT NULL,
    url               TEXT NOT NULL,
    events            TEXT NOT NULL,
    description       TEXT NOT NULL,
    batch_size        INTEGER NOT NULL,
    secret            TEXT NOT NULL,
    old_secret        TEXT,
    old_secret_until  REAL,
    status            TEXT NOT NULL,
    disabled_reason   TEXT NOT NULL,
    created_at        REAL NOT NULL,
    updated_at        REAL NOT NULL,
    cursor            INTEGER NOT NULL,
    batch_id          TEXT,
    batch_last        INTEGER,
    batch_started     REAL,
    attempts          INTEGER NOT NULL,
    next_attempt_at   REAL NOT NULL,
    lease_owner       TEXT,
    lease_until       REAL
);
CREATE INDEX webhooks_tenant ON webhooks (tenant_id, created_at);

CREATE TABLE webhook_deliveries (
    id             TEXT PRIMARY KEY,
    webhook_id     TEXT NOT NULL,
    tenant_id      TEXT NOT NULL,
    status         TEXT NOT NULL,
    first_event    INTEGER NOT NULL,
    last_event     INTEGER NOT NULL,
    count          INTEGER NOT NULL,
    attempts       INTEGER NOT NULL,
    created_at     REAL NOT NULL,
    updated_at     REAL NOT NULL,
    response_code  INTEGER,
    latency_ms     REAL,
    error          TEXT NOT NULL
);
CREATE INDEX webhook_deliveries_hook ON webhook_deliveries (webhook_id, updated_at);
CREATE INDEX webhook_deliveries_age ON webhook_deliveries (updated_at);

-- Admin tokens (only their SHA-256) and the audit log of operator and tenant actions.
CREATE TABLE admin_tokens (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    token_hash    TEXT NOT NULL UNIQUE,
    prefix        TEXT NOT NULL,
    created_at    REAL NOT NULL,
    last_used_at  REAL,
    revoked_at    REAL
);

CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          REAL NOT NULL,
    actor_kind  TEXT NOT NULL,
    actor_id    TEXT NOT NULL,
    tenant_id   TEXT,
    action      TEXT NOT NULL,
    target      TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    detail      TEXT NOT NULL
);
CREATE INDEX audit_log_tenant ON audit_log (tenant_id, id);

-- Traffic per minute over every tenant (the operator dashboard's charts): sums, added to
-- by every node.
CREATE TABLE activity_counts (
    bucket      REAL PRIMARY KEY,
    accepted    INTEGER NOT NULL DEFAULT 0,
    delivered   INTEGER NOT NULL DEFAULT 0,
    deferred    INTEGER NOT NULL DEFAULT 0,
    bounced     INTEGER NOT NULL DEFAULT 0,
    complained  INTEGER NOT NULL DEFAULT 0
);

-- Operators' temporary static routes (POST /admin/v1/queues/reroute): mail to domain (or to
-- every domain whose MX hosts match the throttle rule provider; the other one is '') goes to
-- host:port until the time in until. Every node reads the table at each queue scan.
CREATE TABLE reroutes (
    id          TEXT PRIMARY KEY,
    domain      TEXT NOT NULL,
    provider    TEXT NOT NULL,
    host        TEXT NOT NULL,
    port        INTEGER NOT NULL,
    created_at  REAL NOT NULL,
    until       REAL NOT NULL,
    reason      TEXT NOT NULL,
    UNIQUE (domain, provider)
);
