-- Version 7: recipients stored in queue order, (domain, tenant_id, message_id, idx), found
-- by (message_id, idx) through an index: at ten million queued, leasing ten recipients of a
-- queue read about forty scattered pages and now reads a few neighbouring ones (4-5x less
-- time in the store's writer). The table is rebuilt (about a minute per ten million rows);
-- its counts do not change.
ALTER TABLE recipients RENAME TO recipients_old;
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
INSERT INTO recipients
SELECT * FROM recipients_old ORDER BY domain, tenant_id, message_id, idx;
DROP TABLE recipients_old;
CREATE UNIQUE INDEX recipients_message ON recipients (message_id, idx);
CREATE INDEX recipients_owner ON recipients (lease_owner) WHERE lease_owner IS NOT NULL;
-- A queue is one tenant's recipients in one domain: leased oldest due first, and its next
-- due time read without touching the table (lease_owner is in the index).
CREATE INDEX recipients_due ON recipients (domain, tenant_id, next_attempt_at, lease_owner)
    WHERE state = 'queued';
-- The oldest queued recipient of a queue, for queue views.
CREATE INDEX recipients_age ON recipients (domain, tenant_id, created_at) WHERE state = 'queued';

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
