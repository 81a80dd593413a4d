-- Version 1: tenants, keys, messages, the recipient queue hash-partitioned by domain,
-- events, idempotency keys and pauses.

CREATE TABLE postline_schema (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version    integer NOT NULL
);
INSERT INTO postline_schema (version) VALUES (1);

CREATE TABLE tenants (
    id          text PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    created_at  double precision NOT NULL
);

CREATE TABLE api_keys (
    id          text PRIMARY KEY,
    tenant_id   text NOT NULL REFERENCES tenants (id),
    key_hash    text NOT NULL UNIQUE,
    prefix      text NOT NULL,
    created_at  double precision NOT NULL,
    revoked_at  double precision
);

-- One row per message; the body is stored once however many recipients it has.
CREATE TABLE messages (
    id                 text PRIMARY KEY,
    tenant_id          text NOT NULL,
    created_at         double precision NOT NULL,
    mail_from          text NOT NULL,
    message_id_header  text NOT NULL,
    subject            text NOT NULL,
    source             text NOT NULL,
    stream             text NOT NULL,
    tags               jsonb NOT NULL,
    metadata           jsonb NOT NULL,
    size               integer NOT NULL,
    body               bytea NOT NULL
);
CREATE INDEX messages_tenant ON messages (tenant_id, created_at);

-- The queue: one row per recipient, hash-partitioned by recipient domain (16 partitions).
-- state: queued | delivered | bounced | expired | cancelled. A lease moves next_attempt_at
-- to the lease expiry, so an abandoned lease becomes due again. The primary key holds the
-- partition key; lookups by (message_id, idx) use its prefix in every partition.
CREATE TABLE recipients (
    message_id        text NOT NULL,
    idx               integer NOT NULL,
    tenant_id         text NOT NULL,
    address           text NOT NULL,
    domain            text NOT NULL,
    state             text NOT NULL
        CHECK (state IN ('queued', 'delivered', 'bounced', 'expired', 'cancelled')),
    attempts          integer NOT NULL DEFAULT 0,
    created_at        double precision NOT NULL,
    next_attempt_at   double precision NOT NULL,
    expires_at        double precision NOT NULL,
    updated_at        double precision NOT NULL,
    last_code         integer,
    last_enhanced     text,
    last_text         text,
    last_mx           text,
    lease_owner       text,
    lease_expires_at  double precision,
    PRIMARY KEY (message_id, idx, domain)
) PARTITION BY HASH (domain);

DO $$
BEGIN
    FOR i IN 0..15 LOOP
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF recipients FOR VALUES WITH (MODULUS 16, REMAINDER %s)',
            'recipients_p' || lpad(i::text, 2, '0'), i);
    END LOOP;
END
$$;

CREATE INDEX recipients_due ON recipients (domain, next_attempt_at) WHERE state = 'queued';

-- Append-only event log; id is the cursor.
CREATE TABLE events (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at             double precision NOT NULL,
    tenant_id      text NOT NULL,
    type           text NOT NULL,
    message_id     text,
    recipient_idx  integer,
    recipient      text,
    node_id        text,
    data           jsonb NOT NULL
);
CREATE INDEX events_tenant ON events (tenant_id, id);
CREATE INDEX events_message ON events (message_id, id);

CREATE TABLE idempotency (
    tenant_id     text NOT NULL,
    key           text NOT NULL,
    request_hash  text NOT NULL,
    status        integer NOT NULL,
    response      text NOT NULL,
    created_at    double precision NOT NULL,
    PRIMARY KEY (tenant_id, key)
);
CREATE INDEX idempotency_age ON idempotency (created_at);

-- Paused (tenant, domain) queues; tenant_id '*' pauses a domain for every tenant.
CREATE TABLE queue_pauses (
    tenant_id  text NOT NULL,
    domain     text NOT NULL,
    paused_at  double precision NOT NULL,
    reason     text NOT NULL,
    PRIMARY KEY (tenant_id, domain)
);
