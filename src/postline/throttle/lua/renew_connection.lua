-- renew_connection: extend a live lease to now + ttl.
-- KEYS: leases
-- ARGV: now ('' = server TIME), lease id, ttl
-- Returns 1 when renewed, 0 when the lease expired or never existed.

local now = clock(ARGV[1])
prune_leases(KEYS[1], now)
if not redis.call('ZSCORE', KEYS[1], ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], 'XX', fmt(now + tonumber(ARGV[3])), ARGV[2])
expire_leases(KEYS[1], now)
return 1
