-- connections: the number of live leases (read only).
-- KEYS: leases
-- ARGV: now ('' = server TIME)

local now = clock(ARGV[1])
return redis.call('ZCOUNT', KEYS[1], '(' .. fmt(now), '+inf')
