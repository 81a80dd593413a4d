-- Helpers shared by every throttle script; the backend prepends this file to each one.
--
-- Numbers cross the wire as text: '%.17g' round-trips a double exactly (Lua's tostring
-- and Redis' number-to-integer reply conversion would both lose digits). The arithmetic
-- mirrors postline/throttle/gcra.py and adaptive.py operation for operation, so both
-- backends compute the same doubles.

local EPSILON = 1e-9
-- Idle records outlive their last meaningful instant by this many milliseconds.
local EXPIRY_MARGIN_MS = 1000

-- The bucket clock: the caller's time when given, otherwise the server's TIME, which all
-- nodes of a fleet share.
local function clock(arg)
  if arg ~= nil and arg ~= '' then
    return tonumber(arg)
  end
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

local function fmt(x)
  return string.format('%.17g', x)
end

-- ``seconds`` from now plus the margin, as whole milliseconds (text) for PX / PEXPIRE.
local function millis(seconds)
  local ms = math.ceil(seconds * 1000) + EXPIRY_MARGIN_MS
  return string.format('%d', math.min(math.max(ms, 1), 9007199254740992))
end

-- Let ``key`` expire ``seconds`` from now (plus the margin); never earlier than that.
local function expire_in(key, seconds)
  redis.call('PEXPIRE', key, millis(seconds))
end

-- Leases: a sorted set of lease id -> expiry time.

local function prune_leases(key, now)
  -- a lease has expired once ``expires <= now`` (inclusive bound)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', fmt(now))
end

local function expire_leases(key, now)
  local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if last[2] then
    expire_in(key, tonumber(last[2]) - now)
  end
end

-- Adaptive state: a hash with factor, suspended_until, last_update and strikes (the
-- times of recent episodes, separated by spaces). A missing field reads as fresh.

local function load_adaptive(key)
  local raw = redis.call('HMGET', key, 'factor', 'suspended_until', 'last_update', 'strikes')
  local state = {
    factor = tonumber(raw[1]) or 1.0,
    suspended_until = tonumber(raw[2]) or 0.0,
    last_update = tonumber(raw[3]) or 0.0,
    strikes = {},
  }
  if raw[4] then
    for word in string.gmatch(raw[4], '%S+') do
      state.strikes[#state.strikes + 1] = tonumber(word)
    end
  end
  return state
end

-- adaptive.current_factor
local function current_factor(state, now, recover_step, recover_interval)
  if state.factor >= 1.0 then
    return 1.0
  end
  local elapsed = math.max(0.0, now - state.last_update)
  local steps = math.floor(elapsed / recover_interval)
  return math.min(1.0, state.factor + steps * recover_step)
end

local function adaptive_reply(state)
  local out = { fmt(state.factor), fmt(state.suspended_until), fmt(state.last_update) }
  for _, t in ipairs(state.strikes) do
    out[#out + 1] = fmt(t)
  end
  return out
end

-- Fencing (connection slots): the record ``fence`` names the server that holds the
-- fleet's leases now, by its INFO run_id, which changes with every start of a server and
-- differs between servers. A script run by a server whose run_id is not the recorded one
-- (an empty restart, a restart from a snapshot, a promoted replica, another server at the
-- same address) begins a new epoch: leases granted before may be missing, so for
-- ``quarantine`` seconds no new slot of a limited bucket is granted, while holders
-- re-register the slots they still use. Returns the epoch (the run_id) and when its
-- quarantine ends.

local function server_id()
  local info = redis.call('INFO', 'server')
  return string.match(info, 'run_id:(%x+)') or ''
end

local function fence(key, now, quarantine)
  local run_id = server_id()
  local raw = redis.call('HMGET', key, 'epoch', 'since', 'quiet')
  if raw[1] == run_id then
    local since = tonumber(raw[2])
    local quiet = tonumber(raw[3])
    if quarantine > quiet then
      -- a holder with a longer lease: its slots may outlive the shorter quarantine
      redis.call('HSET', key, 'quiet', fmt(quarantine))
      quiet = quarantine
    end
    return run_id, since + quiet
  end
  redis.call('HSET', key, 'epoch', run_id, 'since', fmt(now), 'quiet', fmt(quarantine))
  return run_id, now + quarantine
end
