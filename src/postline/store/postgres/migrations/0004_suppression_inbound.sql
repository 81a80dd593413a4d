-- Version 4: suppression lists, soft-bounce runs, inbound reports.

-- Addresses a tenant (tenant_id '*': every tenant) must not mail; lower-cased. On Citus:
-- distributed on tenant_id.
CREATE TABLE suppressions (
    tenant_id   text NOT NULL,
    address     text NOT NULL,
    reason      text NOT NULL,
    created_at  double precision NOT NULL,
    expires_at  double precision,
    source      text NOT NULL,
    detail      text NOT NULL,
    message_id  text,
    PRIMARY KEY (tenant_id, address)
);

-- Runs of soft bounces per address, for the "N in M days" suppression rule.
CREATE TABLE soft_bounces (
    tenant_id  text NOT NULL,
    address    text NOT NULL,
    count      integer NOT NULL,
    first_at   double precision NOT NULL,
    last_at    double precision NOT NULL,
    PRIMARY KEY (tenant_id, address)
);

-- Reports (DSNs, complaints, auto-replies) received by the inbound servers, kept before
-- the 250 and processed afterwards by whichever node claims them.
CREATE TABLE inbound (
    id             text PRIMARY KEY,
    received_at    double precision NOT NULL,
    mail_from      text NOT NULL,
    rcpt_to        text[] NOT NULL,
    peer           text NOT NULL,
    body           bytea NOT NULL,
    state          text NOT NULL,
    attempts       integer NOT NULL DEFAULT 0,
    claimed_until  double precision,
    processed_at   double precision,
    result         text
);
CREATE INDEX inbound_pending ON inbound (received_at) WHERE state = 'pending';

ALTER TABLE recipients DROP CONSTRAINT recipients_state_check;
ALTER TABLE recipients ADD CONSTRAINT recipients_state_check
    CHECK (state IN ('queued', 'delivered', 'bounced', 'expired', 'cancelled', 'suppressed'));
