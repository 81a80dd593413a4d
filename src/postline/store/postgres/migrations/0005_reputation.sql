-- Version 5: reputation counts per tenant, stream and time bucket; tenant statuses.

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
