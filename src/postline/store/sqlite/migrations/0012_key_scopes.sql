-- Version 12: API key names, scopes and last use. scopes is the key's scopes separated by
-- spaces; NULL means every tenant scope, which keys made before version 12 keep.
ALTER TABLE api_keys ADD COLUMN name TEXT NOT NULL DEFAULT '';
ALTER TABLE api_keys ADD COLUMN scopes TEXT;
ALTER TABLE api_keys ADD COLUMN last_used_at REAL;
