-- Version 4: reputation counts per tenant, stream and time bucket; tenant statuses.

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
