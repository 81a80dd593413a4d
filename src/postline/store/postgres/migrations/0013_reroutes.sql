-- Version 13: operators' temporary static routes (POST /admin/v1/queues/reroute): mail to
-- domain (or to every domain whose MX hosts match the throttle rule provider; the other one
-- is '') goes to host:port until the time in until.
CREATE TABLE reroutes (
    id          text PRIMARY KEY,
    domain      text NOT NULL,
    provider    text NOT NULL,
    host        text NOT NULL,
    port        integer NOT NULL,
    created_at  double precision NOT NULL,
    until       double precision NOT NULL,
    reason      text NOT NULL,
    UNIQUE (domain, provider)
);
