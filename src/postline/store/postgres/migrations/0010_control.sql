-- Version 10: the control plane. Admin tokens (only their SHA-256 is kept) and the audit
-- log of operator and tenant actions (who, what, on which tenant, with which request).
CREATE TABLE admin_tokens (
    id            text PRIMARY KEY,
    name          text NOT NULL,
    token_hash    text NOT NULL UNIQUE,
    prefix        text NOT NULL,
    created_at    double precision NOT NULL,
    last_used_at  double precision,
    revoked_at    double precision
);

CREATE TABLE audit_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          double precision NOT NULL,
    actor_kind  text NOT NULL,
    actor_id    text NOT NULL,
    tenant_id   text,
    action      text NOT NULL,
    target      text NOT NULL,
    request_id  text NOT NULL,
    detail      jsonb NOT NULL
);
CREATE INDEX audit_log_tenant ON audit_log (tenant_id, id);
