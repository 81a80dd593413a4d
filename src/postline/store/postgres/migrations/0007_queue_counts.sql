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

DROP TABLE queue_domains;
