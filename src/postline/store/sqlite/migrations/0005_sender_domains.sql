-- Version 5: sender domains and their DKIM keys.

-- Domains a tenant sends from, with the last check of their DNS records.
CREATE TABLE sender_domains (
    tenant_id    TEXT NOT NULL,
    domain       TEXT NOT NULL,
    created_at   REAL NOT NULL,
    status       TEXT NOT NULL,
    verified_at  REAL,
    checked_at   REAL,
    check_result TEXT NOT NULL,
    PRIMARY KEY (tenant_id, domain)
) WITHOUT ROWID;

-- DKIM keys of sender domains; private keys sealed (AES-256-GCM) with the node's secret.
CREATE TABLE dkim_keys (
    tenant_id      TEXT NOT NULL,
    domain         TEXT NOT NULL,
    selector       TEXT NOT NULL,
    algorithm      TEXT NOT NULL,
    public_key     TEXT NOT NULL,
    private_sealed BLOB NOT NULL,
    created_at     REAL NOT NULL,
    state          TEXT NOT NULL,
    PRIMARY KEY (tenant_id, domain, selector)
) WITHOUT ROWID;
