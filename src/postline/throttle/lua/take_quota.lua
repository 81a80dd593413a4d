-- take_quota: count up to n units against every fixed-window counter of one group.
-- KEYS: one counter per window (all with the group's hash tag)
-- ARGV: n, then limit and ttl (seconds) of each window in KEYS order
-- Returns the grant: min(n, smallest limit - used), never below 0; every counter grows
-- by the grant and lives ttl seconds more (plus the margin).

local grant = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  local used = tonumber(redis.call('GET', key) or '0')
  local room = tonumber(ARGV[2 * i]) - used
  if room < grant then
    grant = room
  end
end
if grant < 0 then
  grant = 0
end
if grant > 0 then
  for i, key in ipairs(KEYS) do
    redis.call('INCRBY', key, grant)
    expire_in(key, tonumber(ARGV[2 * i + 1]))
  end
end
return grant
