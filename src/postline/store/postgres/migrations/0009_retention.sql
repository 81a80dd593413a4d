-- Version 9: retention. The event log is partitioned by time (a partition per UTC day,
-- made ahead and dropped whole once past [retention] events, by the store itself; a
-- default partition takes what falls outside them), so old events are never deleted row
-- by row. The existing events become one partition ending now (dropped whole in turn);
-- an empty one is simply dropped. A message's body is deleted some days after its last
-- recipient became final (purged_at says when); the indexes let the cleaner find the
-- oldest rows without a scan.
ALTER TABLE events RENAME TO events_legacy;
ALTER INDEX events_tenant RENAME TO events_legacy_tenant;
ALTER INDEX events_message RENAME TO events_legacy_message;
ALTER TABLE events_legacy RENAME CONSTRAINT events_pkey TO events_legacy_pkey;
DO $$
DECLARE
    top bigint;
    cut double precision;
    empty boolean;
BEGIN
    SELECT coalesce(max(id), 0) + 1, greatest(extract(epoch FROM now()), coalesce(max(at), 0) + 1),
           count(*) = 0
      INTO top, cut, empty
      FROM events_legacy;
    ALTER TABLE events_legacy ALTER COLUMN id DROP IDENTITY;
    CREATE TABLE events (
        id             bigint GENERATED ALWAYS AS IDENTITY,
        at             double precision NOT NULL,
        tenant_id      text NOT NULL,
        type           text NOT NULL,
        message_id     text,
        recipient_idx  integer,
        recipient      text,
        node_id        text,
        data           jsonb NOT NULL,
        PRIMARY KEY (id, at)
    ) PARTITION BY RANGE (at);
    CREATE INDEX events_tenant ON events (tenant_id, id);
    CREATE INDEX events_message ON events (message_id, id);
    CREATE TABLE events_default PARTITION OF events DEFAULT;
    EXECUTE format('ALTER TABLE events ALTER COLUMN id RESTART WITH %s', top);
    IF empty THEN
        DROP TABLE events_legacy;
    ELSE
        ALTER TABLE events_legacy DROP CONSTRAINT events_legacy_pkey;
        EXECUTE format(
            'ALTER TABLE events ATTACH PARTITION events_legacy FOR VALUES FROM (MINVALUE) TO (%s)',
            cut
        );
    END IF;
END $$;

ALTER TABLE messages ADD COLUMN purged_at double precision;
CREATE INDEX messages_created ON messages (created_at);
CREATE INDEX messages_unpurged ON messages (created_at) WHERE purged_at IS NULL;
CREATE INDEX webhook_deliveries_age ON webhook_deliveries (updated_at);
CREATE INDEX inbound_done ON inbound (received_at) WHERE state <> 'pending';
