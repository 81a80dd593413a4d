-- Version 6: sender domains and their DKIM keys.

-- Domains a tenant sends from, with the last check of their DNS records.
CREATE TABLE sender_domains (
    tenant_id    text NOT NULL,
    domain       text NOT NULL,
    created_at   double precision NOT NULL,
    status       text NOT NULL,
    verified_at  double precision,
    checked_at   double precision,
    check_result text NOT NULL,
    PRIMARY KEY (tenant_id, domain)
);

-- DKIM keys of sender domains; private keys sealed (AES-256-GCM) with the node's secret.
CREATE TABLE dkim_keys (
    tenant_id      text NOT NULL,
    domain         text NOT NULL,
    selector       text NOT NULL,
    algorithm      text NOT NULL,
    public_key     text NOT NULL,
    private_sealed bytea NOT NULL,
    created_at     double precision NOT NULL,
    state          text NOT NULL,
    PRIMARY KEY (tenant_id, domain, selector)
);
