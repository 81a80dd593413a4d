-- Version 7: queues are (tenant, domain) pairs, leased queue by queue; their sizes and the
-- recipients per state are counted as rows change (statement triggers append deltas, which
-- fold_counts folds into the totals), instead of by scans. queue_counts replaces
-- queue_domains.
DROP INDEX recipients_due;
-- A queue is one tenant's recipients in one domain: leased oldest due first, and its next
-- due time read from the index alone (lease_owner is in it).
CREATE INDEX recipients_due ON recipients (domain, tenant_id, next_attempt_at, lease_owner)
    WHERE state = 'queued';
-- The oldest queued recipient of a queue, for queue views.
CREATE INDEX recipients_age ON recipients (domain, tenant_id, created_at) WHERE state = 'queued';

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

INSERT INTO queue_counts (tenant_id, domain, queued, deferred)
SELECT tenant_id, domain, count(*), count(*) FILTER (WHERE attempts > 0)
FROM recipients WHERE state = 'queued'
GROUP BY tenant_id, domain;
INSERT INTO recipient_counts (state, n) SELECT state, count(*) FROM recipients GROUP BY state;

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
    WITH changed AS (
        SELECT n.tenant_id, n.domain, o.state AS old_state, n.state AS new_state,
               o.attempts AS old_attempts, n.attempts AS new_attempts
        FROM old_rows o JOIN new_rows n USING (message_id, idx, domain)
        WHERE o.state <> n.state
           OR (n.state = 'queued' AND (o.attempts > 0) <> (n.attempts > 0))
    ), q AS (
        INSERT INTO queue_count_deltas (tenant_id, domain, queued, deferred)
        SELECT c.tenant_id, c.domain,
               sum((c.new_state = 'queued')::int - (c.old_state = 'queued')::int),
               sum((c.new_state = 'queued' AND c.new_attempts > 0)::int
                   - (c.old_state = 'queued' AND c.old_attempts > 0)::int)
        FROM changed c
        GROUP BY c.tenant_id, c.domain
    )
    INSERT INTO recipient_count_deltas (state, n)
    SELECT s.state, sum(s.n) FROM (
        SELECT c.old_state AS state, -1 AS n FROM changed c WHERE c.old_state <> c.new_state
        UNION ALL
        SELECT c.new_state, 1 FROM changed c WHERE c.old_state <> c.new_state
    ) s
    GROUP BY s.state;
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

DROP TABLE queue_domains;
