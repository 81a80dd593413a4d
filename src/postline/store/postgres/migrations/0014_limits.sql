-- Version 14: sending limits and usage. A tenant's and a key's own limits (NULL: the
-- [limits] default; 0: unlimited); tenant_usage counts accepted recipients per tenant and
-- UTC day, written in the enqueue's transaction (a month is the sum of its days).
ALTER TABLE tenants
    ADD COLUMN rate_limit integer,
    ADD COLUMN rate_burst integer,
    ADD COLUMN daily_quota bigint,
    ADD COLUMN monthly_quota bigint;
ALTER TABLE api_keys
    ADD COLUMN rate_limit integer,
    ADD COLUMN rate_burst integer;
CREATE TABLE tenant_usage (
    tenant_id   text NOT NULL,
    day         text NOT NULL,
    recipients  bigint NOT NULL,
    PRIMARY KEY (tenant_id, day)
);
