-- Version 6: queues are (tenant, domain) pairs, leased queue by queue; their sizes and the
-- recipients per state are counted by triggers as rows change, instead of by scans.
DROP INDEX recipients_due;
-- A queue is one tenant's recipients in one domain: leased oldest due first, and its next
-- due time read without touching the table (lease_owner is in the index).
CREATE INDEX recipients_due ON recipients (domain, tenant_id, next_attempt_at, lease_owner)
    WHERE state = 'queued';
-- The oldest queued recipient of a queue, for queue views.
CREATE INDEX recipients_age ON recipients (domain, tenant_id, created_at) WHERE state = 'queued';

-- Queued recipients per queue (tenant, domain) and recipients per state, kept by the
-- triggers below in the transactions that change them: views, metrics and the queue scan
-- read these instead of counting rows.
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

INSERT INTO queue_counts (tenant_id, domain, queued, deferred)
SELECT tenant_id, domain, count(*), sum(attempts > 0) FROM recipients WHERE state = 'queued'
GROUP BY tenant_id, domain;
INSERT INTO recipient_counts (state, n) SELECT state, count(*) FROM recipients GROUP BY state;

CREATE TRIGGER recipients_count_insert AFTER INSERT ON recipients
BEGIN
    INSERT INTO recipient_counts (state, n) VALUES (new.state, 1)
    ON CONFLICT (state) DO UPDATE SET n = n + 1;
    INSERT INTO queue_counts (tenant_id, domain, queued, deferred)
    SELECT new.tenant_id, new.domain, 1, new.attempts > 0 WHERE new.state = 'queued'
    ON CONFLICT (tenant_id, domain) DO UPDATE
    SET queued = queued + 1, deferred = deferred + excluded.deferred;
END;

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
