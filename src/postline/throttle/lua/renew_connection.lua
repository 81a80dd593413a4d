-- renew_connection: extend a live lease to now + ttl.
-- KEYS: leases, fence
-- ARGV: now ('' = server TIME), lease id, ttl, quarantine ('' = no fencing),
--       the epoch that last confirmed the lease ('' = unknown), limit ('' = none)
-- Returns {1, epoch} when renewed, {0, epoch} when the lease expired or never existed.
--
-- With fencing, a lease missing from a NEW epoch (this server lost it, see ``fence``) is
-- re-registered while the epoch's quarantine lasts and the bucket has room: nobody else
-- can have taken its slot then, since the quarantine grants no new slots. A lease missing
-- from its own epoch expired: it is not given back.

local now = clock(ARGV[1])
local epoch = ''
local quiet_until = 0
if ARGV[4] ~= '' then
  epoch, quiet_until = fence(KEYS[2], now, tonumber(ARGV[4]))
end
prune_leases(KEYS[1], now)
if not redis.call('ZSCORE', KEYS[1], ARGV[2]) then
  if epoch == '' or ARGV[5] == '' or ARGV[5] == epoch or now >= quiet_until then
    return { 0, epoch }
  end
  if ARGV[6] ~= '' and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[6]) then
    return { 0, epoch }
  end
end
redis.call('ZADD', KEYS[1], fmt(now + tonumber(ARGV[3])), ARGV[2])
expire_leases(KEYS[1], now)
return { 1, epoch }
