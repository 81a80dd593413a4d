-- release_connection: free a lease's slot (an unknown lease is ignored).
-- KEYS: leases
-- ARGV: lease id
-- Redis deletes the sorted set with its last member, so nothing is left behind.

redis.call('ZREM', KEYS[1], ARGV[1])
return 0
