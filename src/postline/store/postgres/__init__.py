"""PostgreSQL store: the fleet backend (asyncpg), queue hash-partitioned by domain."""
