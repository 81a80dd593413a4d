-- Version 8: tenants' webhook endpoints and the log of the batches sent to them.
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
