-- acquire_connection: take a connection slot as a lease that expires.
-- KEYS: leases, fence
-- ARGV: now ('' = server TIME), limit ('' = none), ttl, lease id,
--       quarantine ('' = no fencing; seconds otherwise, see ``fence``)
-- Returns {lease id, epoch}: the lease id is '' when ``limit`` leases are live or the
-- epoch's quarantine forbids new slots; the epoch is '' without fencing.

local now = clock(ARGV[1])
local epoch = ''
if ARGV[5] ~= '' then
  local quiet_until
  epoch, quiet_until = fence(KEYS[2], now, tonumber(ARGV[5]))
  -- an unlimited bucket has no limit to protect: its leases only count
  if ARGV[2] ~= '' and now < quiet_until then
    return { '', epoch }
  end
end
prune_leases(KEYS[1], now)
if ARGV[2] ~= '' and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return { '', epoch }
end
redis.call('ZADD', KEYS[1], fmt(now + tonumber(ARGV[3])), ARGV[4])
expire_leases(KEYS[1], now)
return { ARGV[4], epoch }
