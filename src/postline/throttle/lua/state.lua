-- state: the bucket's status now (read only).
-- KEYS: adaptive, leases
-- ARGV: now ('' = server TIME), recover_step, recover_interval, strike_window
-- Returns {factor, suspended_until, suspended_for, strikes} as text and the lease count.

local now = clock(ARGV[1])
local strike_window = tonumber(ARGV[4])
local state = load_adaptive(KEYS[1])
local strikes = 0
for _, t in ipairs(state.strikes) do
  if now - t < strike_window then
    strikes = strikes + 1
  end
end
return {
  fmt(current_factor(state, now, tonumber(ARGV[2]), tonumber(ARGV[3]))),
  fmt(state.suspended_until),
  fmt(math.max(0.0, state.suspended_until - now)),
  tostring(strikes),
  redis.call('ZCOUNT', KEYS[2], '(' .. fmt(now), '+inf'),
}
