-- Version 8: tenants' webhook endpoints and the log of the batches sent to them.
CREATE TABLE webhooks (
    id                text PRIMARY KEY,
    tenant_id         text NOT NULL,
    url               text NOT NULL,
    events            jsonb NOT NULL,
    description       text NOT NULL,
    batch_size        integer NOT NULL,
    secret            text NOT NULL,
    old_secret        text,
    old_secret_until  double precision,
    status            text NOT NULL,
    disabled_reason   text NOT NULL,
    created_at        double precision NOT NULL,
    updated_at        double precision NOT NULL,
    cursor            bigint NOT NULL,
    batch_id          text,
    batch_last        bigint,
    batch_started     double precision,
    attempts          integer NOT NULL,
    next_attempt_at   double precision NOT NULL,
    lease_owner       text,
    lease_until       double precision
);
CREATE INDEX webhooks_tenant ON webhooks (tenant_id, created_at);

CREATE TABLE webhook_deliveries (
    id             text PRIMARY KEY,
    webhook_id     text NOT NULL,
    tenant_id      text NOT NULL,
    status         text NOT NULL,
    first_event    bigint NOT NULL,
    last_event     bigint NOT NULL,
    count          integer NOT NULL,
    attempts       integer NOT NULL,
    created_at     double precision NOT NULL,
    updated_at     double precision NOT NULL,
    response_code  integer,
    latency_ms     double precision,
    error          text NOT NULL
);
CREATE INDEX webhook_deliveries_hook ON webhook_deliveries (webhook_id, updated_at);
