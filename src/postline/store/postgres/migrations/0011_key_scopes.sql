-- Version 11: API key names, scopes and last use. scopes is the key's scopes separated by
-- spaces; NULL means every tenant scope, which keys made before version 11 keep.
ALTER TABLE api_keys
    ADD COLUMN name text NOT NULL DEFAULT '',
    ADD COLUMN scopes text,
    ADD COLUMN last_used_at double precision;
