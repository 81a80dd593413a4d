-- try_acquire: GCRA slowed by the adaptive factor (gcra.effective_rate + gcra.gcra).
-- KEYS: rate, adaptive
-- ARGV: now ('' = server TIME), n, messages ('' = unlimited), period, burst,
--       recover_step, recover_interval
-- Returns the wait in seconds as text: '0' = granted and counted.

local now = clock(ARGV[1])
local n = tonumber(ARGV[2])
local state = load_adaptive(KEYS[2])
if now < state.suspended_until then
  return fmt(state.suspended_until - now)
end
if ARGV[3] == '' then
  return '0'
end
local factor = current_factor(state, now, tonumber(ARGV[6]), tonumber(ARGV[7]))
local interval = tonumber(ARGV[4]) / tonumber(ARGV[3]) / factor
local burst = math.max(1, math.floor(tonumber(ARGV[5]) * factor + EPSILON))
local tat = tonumber(redis.call('GET', KEYS[1])) or -math.huge
local base = math.max(tat, now)
local wait = (base - now) - interval * math.max(0, burst - n)
if wait > EPSILON then
  return fmt(wait)
end
local new_tat = base + n * interval
-- once the TAT has passed, a missing record means the same thing: an idle bucket
redis.call('SET', KEYS[1], fmt(new_tat), 'PX', millis(new_tat - now))
return '0'
