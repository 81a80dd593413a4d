-- Version 3: suppression lists, soft-bounce runs, inbound reports.

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
