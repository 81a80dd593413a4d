-- Version 15: sending limits and usage. A tenant's and a key's own limits (NULL: the
-- [limits] default; 0: unlimited); tenant_usage counts accepted recipients per tenant and
-- UTC day, written in the enqueue's transaction (a month is the sum of its days).
ALTER TABLE tenants ADD COLUMN rate_limit INTEGER;
ALTER TABLE tenants ADD COLUMN rate_burst INTEGER;
ALTER TABLE tenants ADD COLUMN daily_quota INTEGER;
ALTER TABLE tenants ADD COLUMN monthly_quota INTEGER;
ALTER TABLE api_keys ADD COLUMN rate_limit INTEGER;
ALTER TABLE api_keys ADD COLUMN rate_burst INTEGER;
CREATE TABLE tenant_usage (
    tenant_id   TEXT NOT NULL,
    day         TEXT NOT NULL,
    recipients  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, day)
) WITHOUT ROWID;
