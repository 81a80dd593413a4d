-- Version 12: traffic per minute over every tenant (the operator dashboard's charts).
CREATE TABLE activity_counts (
    bucket      double precision PRIMARY KEY,
    accepted    integer NOT NULL DEFAULT 0,
    delivered   integer NOT NULL DEFAULT 0,
    deferred    integer NOT NULL DEFAULT 0,
    bounced     integer NOT NULL DEFAULT 0,
    complained  integer NOT NULL DEFAULT 0
);
