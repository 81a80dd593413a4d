-- acquire_connection: take a connection slot as a lease that expires.
-- KEYS: leases
-- ARGV: now ('' = server TIME), limit ('' = none), ttl, lease id
-- Returns the lease id, or nil when ``limit`` leases are live.

local now = clock(ARGV[1])
prune_leases(KEYS[1], now)
if ARGV[2] ~= '' and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return false
end
redis.call('ZADD', KEYS[1], fmt(now + tonumber(ARGV[3])), ARGV[4])
expire_leases(KEYS[1], now)
return ARGV[4]
