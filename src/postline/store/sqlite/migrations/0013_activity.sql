-- Version 13: traffic per minute over every tenant (the operator dashboard's charts).
CREATE TABLE activity_counts (
    bucket      REAL PRIMARY KEY,
    accepted    INTEGER NOT NULL DEFAULT 0,
    delivered   INTEGER NOT NULL DEFAULT 0,
    deferred    INTEGER NOT NULL DEFAULT 0,
    bounced     INTEGER NOT NULL DEFAULT 0,
    complained  INTEGER NOT NULL DEFAULT 0
);
