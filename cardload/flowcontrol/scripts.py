"""The Lua scripts of the shared breaker and rate limit: each change one script, timed
by Redis's own clock (``TIME``), so hosts' clocks never have to agree. Durations go
in and out in milliseconds relative to that clock."""

from __future__ import annotations

_NOW = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end
local function num(v) return tonumber(v or '0') or 0 end
"""

_OPEN = """
local function open(key, probe, now, base_ms, max_ms, reason)
  local openings = redis.call('HINCRBY', key, 'openings', 1)
  local span = math.min(max_ms, base_ms * 2 ^ (openings - 1))
  redis.call('HSET', key, 'state', 'open', 'open_until_ms', string.format('%d', now + span),
    'reason', reason, 'failures', 0)
  redis.call('DEL', probe)
  return span
end
"""

# The breaker as it stands. KEYS: breaker.
# Reply: {state, ms until open ends, consecutive failures, reason, ms of 429 pause left}
READ = (
    _NOW
    + """
local f = redis.call('HMGET', KEYS[1], 'state', 'open_until_ms', 'failures', 'reason',
  'pause_until_ms')
local now = now_ms()
return {f[1] or 'closed', string.format('%d', math.max(0, num(f[2]) - now)),
  num(f[3]), f[4] or '', string.format('%d', math.max(0, num(f[5]) - now))}
"""
)

# A call failed the way a down API fails. Closed: counted, and at the threshold the
# breaker opens, each opening in a row longer; refused credentials (ARGV[5] == '1')
# open it at once unless some call succeeded within the last base open period (then
# another host holds good credentials: that host's refusals are its own, counted
# only). Half-open: the probe's own failure (ARGV[6] its holder) opens it again; a
# call sent before, failing late, changes nothing. Open: nothing changes.
# KEYS: breaker, probe.  ARGV: threshold, base open ms, max open ms, reason, at once,
# holder.  Reply: {state after, ms it stays open (0 unless it opened now)}
FAILURE = (
    _NOW
    + _OPEN
    + """
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
local now = now_ms()
if state == 'open' then return {'open', 0} end
if state == 'half_open' then
  if redis.call('GET', KEYS[2]) ~= ARGV[6] then return {'half_open', 0} end
  return {'open', open(KEYS[1], KEYS[2], now, num(ARGV[2]), num(ARGV[3]), ARGV[4])}
end
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
local at_once = ARGV[5] == '1' and
  now - num(redis.call('HGET', KEYS[1], 'last_ok_ms')) > num(ARGV[2])
if at_once or failures >= num(ARGV[1]) then
  return {'open', open(KEYS[1], KEYS[2], now, num(ARGV[2]), num(ARGV[3]), ARGV[4])}
end
return {'closed', 0}
"""
)

# The API answered. The probe of a half-open breaker (ARGV[1] its holder): closed, and
# the next opening starts short again. Otherwise the count of failures in a row ends,
# and when a call last succeeded is noted (refused credentials elsewhere weigh less).
# KEYS: breaker, probe.  ARGV: holder.  Reply: state after
SUCCESS = (
    _NOW
    + """
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
local now = string.format('%d', now_ms())
if state == 'half_open' and redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('HSET', KEYS[1], 'state', 'closed', 'failures', 0, 'openings', 0, 'reason', '',
    'last_ok_ms', now)
  redis.call('DEL', KEYS[2])
  return 'closed'
end
if state == 'closed' then redis.call('HSET', KEYS[1], 'failures', 0, 'last_ok_ms', now) end
return state
"""
)

# A probe granted and then not sent (the rate limit held it): its lease goes at once,
# so another may probe. KEYS: probe.  ARGV: holder
UNPROBE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# May a call go while the breaker is not closed? Open and not yet due: no. Due (or
# half-open with no probe under way): this caller is the one probe, for ARGV[1] ms.
# KEYS: breaker, probe.  ARGV: probe lease ms, holder.
# Reply: {'closed'} | {'probe'} | {'open', ms to wait}
PROBE = (
    _NOW
    + """
local f = redis.call('HMGET', KEYS[1], 'state', 'open_until_ms')
local state = f[1] or 'closed'
if state == 'closed' then return {'closed'} end
local now = now_ms()
local left = num(f[2]) - now
if state == 'open' and left > 0 then return {'open', string.format('%d', left)} end
if redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[1]) then
  redis.call('HSET', KEYS[1], 'state', 'half_open')
  return {'probe'}
end
return {'open', string.format('%d', math.max(1, redis.call('PTTL', KEYS[2])))}
"""
)

# A 429 with Retry-After: every worker waits until then. KEYS: breaker.  ARGV: ms
PAUSE = (
    _NOW
    + """
local deadline = now_ms() + num(ARGV[1])
if deadline > num(redis.call('HGET', KEYS[1], 'pause_until_ms')) then
  redis.call('HSET', KEYS[1], 'pause_until_ms', string.format('%d', deadline))
end
return 1
"""
)

# GCRA: a call every ARGV[1] ms, ARGV[2] at once at most. The caller reserves the
# next slot and waits until it (reply {1, ms to wait}); a slot further off than
# ARGV[3] ms is not reserved (reply {0, ms}). KEYS: theoretical arrival time.
RATE = (
    _NOW
    + """
local interval, burst, max_wait = num(ARGV[1]), num(ARGV[2]), num(ARGV[3])
local now = now_ms()
local tat = math.max(num(redis.call('GET', KEYS[1])), now)
local wait = math.max(0, tat - now - (burst - 1) * interval)
if wait > max_wait then return {0, string.format('%d', wait)} end
redis.call('SET', KEYS[1], string.format('%.3f', tat + interval),
  'PX', string.format('%d', tat + interval - now + 1000))
return {1, string.format('%.3f', wait)}
"""
)

# A call in flight, if fewer than ARGV[1] are: its token held for ARGV[3] ms at most (a
# worker that dies holds it no longer). KEYS: in flight.  ARGV: limit, token, lease ms
# Reply: 1 taken, 0 not.
ENTER = (
    _NOW
    + """
local now = now_ms()
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= num(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], string.format('%d', now + num(ARGV[3])), ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""
)
