-- acquire_all: plain GCRA (gcra.gcra, no adaptive factor) on several buckets of one group,
-- granted on all of them or on none.
-- KEYS: the buckets' rate records (one hash tag: one Redis Cluster slot)
-- ARGV: now ('' = server TIME), n, then per bucket: messages, period, burst
-- Returns {wait, index}: {'0', '0'} = granted and counted on every bucket; else the longest
-- wait in seconds (text) and the 1-based index of the bucket that asks for it.

local now = clock(ARGV[1])
local n = tonumber(ARGV[2])
local worst, at = 0.0, 0
local tats = {}
for i = 1, #KEYS do
  local b = 3 + (i - 1) * 3
  local interval = tonumber(ARGV[b + 1]) / tonumber(ARGV[b])
  local burst = math.max(1, math.floor(tonumber(ARGV[b + 2]) + EPSILON))
  local tat = tonumber(redis.call('GET', KEYS[i])) or -math.huge
  local base = math.max(tat, now)
  local wait = (base - now) - interval * math.max(0, burst - n)
  if wait > EPSILON then
    if wait > worst then
      worst, at = wait, i
    end
  else
    tats[i] = base + n * interval
  end
end
if at > 0 then
  return { fmt(worst), tostring(at) }
end
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], fmt(tats[i]), 'PX', millis(tats[i] - now))
end
return { '0', '0' }
