-- Version 15: deleted tenants. A deleted tenant's row stays as a tombstone (its name is
-- not reused; its messages and events age out with the retention period).
ALTER TABLE tenants ADD COLUMN deleted_at double precision;
