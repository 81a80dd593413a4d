-- Version 2: find a node's leases (renewal, hand-back at start-up) without a table scan.
CREATE INDEX recipients_owner ON recipients (lease_owner) WHERE lease_owner IS NOT NULL;
