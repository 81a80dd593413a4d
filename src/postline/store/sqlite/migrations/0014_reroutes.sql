-- Version 14: operators' temporary static routes (POST /admin/v1/queues/reroute): mail to
-- domain (or to every domain whose MX hosts match the throttle rule provider; the other one
-- is '') goes to host:port until the time in until.
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
