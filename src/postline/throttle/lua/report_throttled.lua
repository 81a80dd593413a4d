-- report_throttled: adaptive.on_throttled on the shared state.
-- KEYS: adaptive
-- ARGV: now ('' = server TIME), decrease, floor, recover_step, recover_interval,
--       cut_cooldown, strikes, strike_window, suspend_for
-- Returns {factor, suspended_until, last_update, strike...} as text.

local now = clock(ARGV[1])
local decrease = tonumber(ARGV[2])
local floor = tonumber(ARGV[3])
local recover_step = tonumber(ARGV[4])
local recover_interval = tonumber(ARGV[5])
local cut_cooldown = tonumber(ARGV[6])
local max_strikes = tonumber(ARGV[7])
local strike_window = tonumber(ARGV[8])
local suspend_for = tonumber(ARGV[9])

local state = load_adaptive(KEYS[1])
if now < state.suspended_until then
  return adaptive_reply(state)
end
local last = state.strikes[#state.strikes]
if last and now - last < cut_cooldown then
  return adaptive_reply(state)
end

local factor = math.max(floor, current_factor(state, now, recover_step, recover_interval) * decrease)
local strikes = {}
for _, t in ipairs(state.strikes) do
  if now - t < strike_window then
    strikes[#strikes + 1] = t
  end
end
strikes[#strikes + 1] = now

local new
if #strikes >= max_strikes then
  local ends = now + suspend_for
  new = { factor = factor, strikes = {}, suspended_until = ends, last_update = ends }
else
  new = {
    factor = factor,
    strikes = strikes,
    suspended_until = state.suspended_until,
    last_update = now,
  }
end

local words = {}
for i, t in ipairs(new.strikes) do
  words[i] = fmt(t)
end
redis.call(
  'HSET', KEYS[1],
  'factor', fmt(new.factor),
  'suspended_until', fmt(new.suspended_until),
  'last_update', fmt(new.last_update),
  'strikes', table.concat(words, ' ')
)

-- idle (adaptive.is_idle) once the suspension is over, the factor is back to 1.0 and
-- every strike has left the window; one recovery step more absorbs rounding
local idle_at = new.suspended_until
if new.factor < 1.0 then
  local steps = math.ceil((1.0 - new.factor) / recover_step) + 1
  idle_at = math.max(idle_at, new.last_update + steps * recover_interval)
end
for _, t in ipairs(new.strikes) do
  idle_at = math.max(idle_at, t + strike_window)
end
expire_in(KEYS[1], idle_at - now)
return adaptive_reply(new)
