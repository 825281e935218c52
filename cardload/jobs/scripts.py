"""The Lua scripts that write a job's record: the only code that does.

Each change is one script, so a status, its attempt counter, its history entry, its
result event and its dead letter never disagree, whatever crashes in between. Every
time a script keeps (leases, the stall watch's progress scores, how long a payment
has been in flight) is Redis's own (``TIME``), so the hosts' clocks never have to agree.

The record is a hash (``keys.job``). Besides the job and its status it holds:

- ``lock`` and ``lock_until_ms``: the lease of the delivery running a step. ``lock``
  is a fencing token (the ``fence`` counter, the server's run_id and the time, so a
  Redis restored from a snapshot never hands out a token again); every write made on
  behalf of a step names its token and is refused once another delivery took the
  lease over.
- ``epoch``: the ``run_id`` of the Redis server that last claimed or admitted the
  job. A server restarted from a snapshot or AOF, or a replica promoted after a
  failover, has a new ``run_id``; a record it serves may have lost writes, so a step
  that finds another epoch reads the API before it acts (``reconcile``).
- ``start_unsettled``: set when a start attempt begins (before the POST), cleared
  once a read or an answer shows what became of the start: whether the card may have
  been loaded unseen.
- ``pending_since_ms``: when a payment was first seen still in flight; waiting for it
  gives back the attempt (a wait is not a try), until the payment timeout.

Retention (Redis runs with ``noeviction``): the script that records a success also
gives the record and its history their expiry, and the job's idempotency keys (its own,
and the aliases ``ALIAS`` noted) a longer one, so no crash can leave a finished job
kept for good; the script that reopens a job for a replay takes any expiry away. A
dead-lettered job is kept until it is replayed or purged (``PURGE``).

Scripts name their keys, except a job's idempotency keys, which they find in its record
(its spec, its alias set), and several keys per job: run one Redis, not a cluster.
"""

from __future__ import annotations

from string import Template

from cardload.jobs.model import JobStatus

_COMMON = """
local function member(list, s)
  return string.find(',' .. list .. ',', ',' .. s .. ',', 1, true) ~= nil
end
local function incarnation()
  -- pcall: where INFO is disabled the server is unknown, and unknown means doubt.
  local info = redis.pcall('INFO', 'server')
  if type(info) ~= 'string' then return '' end
  return string.match(info, 'run_id:(%x+)') or ''
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function now_s()
  return now_ms() / 1000
end
local function fenced(job, fence)
  local holder = redis.call('HGET', job, 'lock')
  if holder ~= fence then return {'fenced', holder or ''} end
  return false
end
local function hand_back(job, history, entry)  -- the lease given back, the step noted
  redis.call('HDEL', job, 'lock', 'lock_until_ms')
  redis.call('RPUSH', history, entry)
end
-- XADD takes one trim strategy: by age here (MINID, the retention), then by length
-- (MAXLEN, the cap for a burst) in the same script rather than in some sweep that may
-- not run. With '~' both drop whole nodes only, so the XTRIM is nearly always a no-op.
local function announce(job, stream, flag, event_id, event_type, data, maxlen, keep_ms)
  if redis.call('HSETNX', job, flag, event_id) == 1 then
    local oldest = string.format('%d', now_ms() - tonumber(keep_ms))
    redis.call('XADD', stream, 'MINID', '~', oldest, '*',
      'event_id', event_id, 'type', event_type, 'data', data)
    redis.call('XTRIM', stream, 'MAXLEN', '~', maxlen)
  end
end
local function names(key_value, job_id)  -- an idempotency key's value: "job_id fingerprint"
  return key_value and string.sub(key_value, 1, #job_id + 1) == job_id .. ' '
end
-- The job's own idempotency key, read from its spec (in pieces, or whole as 0.2 kept
-- it), while it still names this job; nil otherwise.
local function own_key(job, job_id, prefix)
  local spec = redis.call('HGET', job, 'job')
  if not spec then
    local pieces = {}
    while true do
      local piece = redis.call('HGET', job, 'job.' .. #pieces)
      if not piece then break end
      pieces[#pieces + 1] = piece
    end
    spec = table.concat(pieces)
  end
  local ok, decoded = pcall(cjson.decode, spec)
  if not ok or type(decoded) ~= 'table' or type(decoded['idempotency_key']) ~= 'string' then
    return nil
  end
  local key = prefix .. decoded['idempotency_key']
  if names(redis.call('GET', key), job_id) then return key end
  return nil
end
-- Every idempotency key that names the job: its own, then its aliases.
local function job_keys(job, aliases, job_id, prefix)
  local found = {}
  local own = own_key(job, job_id, prefix)
  if own then found[1] = own end
  for _, alias in ipairs(redis.call('SMEMBERS', aliases)) do
    if names(redis.call('GET', alias), job_id) then found[#found + 1] = alias end
  end
  return found
end
-- A succeeded job: its record and history forgotten after jobs_ms, its keys (which
-- keep a resubmission from loading again) after keys_ms.
local function retire(job, history, aliases, job_id, jobs_ms, keys_ms, prefix)
  redis.call('PEXPIRE', job, jobs_ms)
  redis.call('PEXPIRE', history, jobs_ms)
  for _, key in ipairs(job_keys(job, aliases, job_id, prefix)) do
    redis.call('PEXPIRE', key, keys_ms)
  end
  redis.call('DEL', aliases)  -- its keys expire now: nothing left to note
end
"""

# The job's spec goes in as field/value pairs of at most 64 bytes each (``store``); the
# admission's history entry is not stored (``enqueued_at`` says it).
# KEYS: idem, job, active.  ARGV: job_id, fingerprint, now_iso, spec field, value, ...
ADMIT = (
    _COMMON
    + """
local existing = redis.call('GET', KEYS[1])
if existing then return {existing, 0} end
-- The record first: a script is not undone by an error, and a key must never point
-- at a record that was not written.
-- No generation (0) and no updated_at (= enqueued_at) until they change: bytes that
-- every queued job would keep.
redis.call('HSET', KEYS[2], 'fingerprint', ARGV[2], 'status', '$QUEUED',
  'enqueued_at', ARGV[3], 'dispatched', 0, 'epoch', incarnation(), unpack(ARGV, 4))
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. ARGV[2])
redis.call('ZADD', KEYS[3], now_s(), ARGV[1])
return {ARGV[1] .. ' ' .. ARGV[2], 1}
"""
)

# KEYS: job, history, active.
# ARGV: 1 job_id, 2 step, 3 claimable statuses, 4 running status, 5 claim entry,
#       6 lease ttl ms, 7 max attempts, 8 now_iso, 9 "transaction known" entry
# Replies: {'missing'} | {'finished', status} | {'proceed', status} (create: the
# transaction is known, go on to start) | {'redirect', status} (start: no transaction
# yet, create first) | {'busy', status} | {'locked', ms left} |
# {'claimed', fence, attempt, previous status, previous holder, unsettled before,
#  server time ms, HGETALL}
CLAIM = (
    _COMMON
    + """
local job, step = KEYS[1], ARGV[2]
local status = redis.call('HGET', job, 'status')
if not status then return {'missing'} end
if status == '$SUCCEEDED' or status == '$DEAD_LETTERED' then return {'finished', status} end
local tx = redis.call('HGET', job, 'transaction_id')
local has_tx = tx and tx ~= ''
local now = now_ms()
if step == 'create' and has_tx then
  if status == '$QUEUED' then  -- a replay of a job that has its transaction
    redis.call('HSET', job, 'status', '$CREATED', 'updated_at', ARGV[8])
    redis.call('RPUSH', KEYS[2], ARGV[9])
    redis.call('ZADD', KEYS[3], now / 1000, ARGV[1])
    return {'proceed', status}
  end
  if status == '$CREATED' then return {'proceed', status} end
  return {'busy', status}
end
if step == 'start' and not has_tx then
  if status == '$QUEUED' then return {'redirect', status} end
  return {'busy', status}
end
if not member(ARGV[3], status) then return {'busy', status} end
local holder = redis.call('HGET', job, 'lock')
if holder then
  local until_ms = tonumber(redis.call('HGET', job, 'lock_until_ms') or '0')
  if until_ms > now then return {'locked', tostring(until_ms - now)} end
end
local attempt = redis.call('HINCRBY', job, 'attempts_' .. step, 1)
local current = incarnation()
-- Unique across servers too: a Redis restored from a snapshot counts fences again.
local fence = redis.call('HINCRBY', job, 'fence', 1) .. '-' .. current .. '-' .. now
if current == '' or redis.call('HGET', job, 'epoch') ~= current then
  redis.call('HSET', job, 'reconcile', 1, 'epoch', current)
end
local unsettled = redis.call('HGET', job, 'start_unsettled') or '0'
if step == 'start' and attempt <= tonumber(ARGV[7]) then
  redis.call('HSET', job, 'start_unsettled', 1)  -- written ahead of the POST
end
redis.call('HSET', job, 'status', ARGV[4], 'lock', fence,
  'lock_until_ms', string.format('%d', now + tonumber(ARGV[6])), 'updated_at', ARGV[8])
local entry = cjson.decode(ARGV[5])
entry['attempt'] = attempt
redis.call('RPUSH', KEYS[2], cjson.encode(entry))
redis.call('ZADD', KEYS[3], now / 1000, ARGV[1])
return {'claimed', fence, tostring(attempt), status, holder or '', unsettled,
  string.format('%d', now), redis.call('HGETALL', job)}
"""
)

# KEYS: job.  ARGV: fence, ttl ms.  1 if renewed, 0 if the lease is someone else's.
RENEW = (
    _COMMON
    + """
if fenced(KEYS[1], ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'lock_until_ms', string.format('%d', now_ms() + tonumber(ARGV[2])))
return 1
"""
)

# KEYS: job.  ARGV: fence.
RELEASE = (
    _COMMON
    + """
if fenced(KEYS[1], ARGV[1]) then return 0 end
return redis.call('HDEL', KEYS[1], 'lock', 'lock_until_ms')
"""
)

# The end of a claimed step: the job's new fields, its history entry, the lease given
# back, the attempt given back if the step only waited; refused with {'fenced', holder}
# if another delivery holds the lease now.
# With a fourth key, the next step's message is pushed onto that list too: on a Redis
# broker that is this Redis, the step's end and its next message are one write.
# KEYS: job, history, active[, broker list].
# ARGV: 1 job_id, 2 fence, 3 history entry, 4 now_iso, 5 attempt counter to give back
#       or '', 6 the message or '', then field/value pairs.
FINISH_STEP = (
    _COMMON
    + """
local refused = fenced(KEYS[1], ARGV[2])
if refused then return refused end
-- The message first: a script is not undone by an error, and a push refused (the key
-- not a list) must leave the step unrecorded, to be run again.
if KEYS[4] then redis.call('LPUSH', KEYS[4], ARGV[6]) end
if ARGV[5] ~= '' then redis.call('HINCRBY', KEYS[1], ARGV[5], -1) end
redis.call('HSET', KEYS[1], 'updated_at', ARGV[4], unpack(ARGV, 7))
hand_back(KEYS[1], KEYS[2], ARGV[3])
redis.call('ZADD', KEYS[3], now_s(), ARGV[1])
return {'ok'}
"""
)

# Success and its event, in one step: a job never succeeds without being announced,
# nor without the expiry that lets Redis forget it.
# KEYS: job, history, active, stream, aliases.
# ARGV: 1 job_id, 2 fence, 3 history entry, 4 now_iso, 5 result, 6 records kept ms,
#       7 keys kept ms, 8 idempotency key prefix, 9 flag, 10 event id, 11 event type,
#       12 event data, 13 stream maxlen, 14 events kept ms
SUCCEED = (
    _COMMON
    + """
local refused = fenced(KEYS[1], ARGV[2])
if refused then return refused end
redis.call('HSET', KEYS[1], 'status', '$SUCCEEDED', 'result', ARGV[5], 'reconcile', 0,
  'start_unsettled', 0, 'pending_since_ms', '', 'updated_at', ARGV[4])
hand_back(KEYS[1], KEYS[2], ARGV[3])
redis.call('ZREM', KEYS[3], ARGV[1])
announce(KEYS[1], KEYS[4], unpack(ARGV, 9, 14))
retire(KEYS[1], KEYS[2], KEYS[5], ARGV[1], ARGV[6], ARGV[7], ARGV[8])
return {'ok'}
"""
)

# The job dead-lettered, its entry written and its failed event appended, all or nothing.
# KEYS: job, history, active, dead-letter index, dead-letter entry, stream.
# ARGV: 1 job_id, 2 fence, 3 history entry, 4 now_iso, 5 error, 6 unsettled, 7 letter,
#       8 flag, 9 event id, 10 event type, 11 event data, 12 stream maxlen,
#       13 events kept ms
DEAD_LETTER = (
    _COMMON
    + """
local refused = fenced(KEYS[1], ARGV[2])
if refused then return refused end
redis.call('HSET', KEYS[1], 'status', '$DEAD_LETTERED', 'error', ARGV[5],
  'start_unsettled', ARGV[6], 'pending_since_ms', '', 'updated_at', ARGV[4])
hand_back(KEYS[1], KEYS[2], ARGV[3])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('SET', KEYS[5], ARGV[7])
redis.call('ZADD', KEYS[4], now_s(), ARGV[1])
announce(KEYS[1], KEYS[6], unpack(ARGV, 8, 13))
return {'ok'}
"""
)

# Back from the dead-letter store to ``queued``: same id, key and transaction, fresh
# attempts, a new generation, and a read of the API before anything is repeated. A
# transaction whose payment failed loaded nothing and cannot be paid again ("repeat
# the payment process"): it is let go, and the replay creates a new one. Any
# expiry on the record or its keys goes: a job that runs again is kept until it ends.
# KEYS: job, history, active, dead-letter index, dead-letter entry, aliases.
# ARGV: job_id, history entry, now_iso, the error kind of a failed payment,
#       idempotency key prefix
REOPEN = (
    _COMMON
    + """
local current = redis.call('HGET', KEYS[1], 'status')
if current ~= '$DEAD_LETTERED' then return current or 'missing' end
local entry = ARGV[2]
local ok, err = pcall(cjson.decode, redis.call('HGET', KEYS[1], 'error') or '')
if ok and type(err) == 'table' and err['kind'] == ARGV[4] then
  local tx = redis.call('HGET', KEYS[1], 'transaction_id') or ''
  redis.call('HSET', KEYS[1], 'transaction_id', '', 'start_unsettled', 0)
  local decoded = cjson.decode(entry)
  decoded['note'] = decoded['note'] .. '; ' .. tx .. ' failed, a new transaction is made'
  entry = cjson.encode(decoded)
end
redis.call('HSET', KEYS[1], 'status', '$QUEUED', 'updated_at', ARGV[3], 'reconcile', 1,
  'attempts_create', 0, 'attempts_start', 0, 'error', '', 'pending_since_ms', '')
redis.call('HINCRBY', KEYS[1], 'generation', 1)
redis.call('RPUSH', KEYS[2], entry)
redis.call('ZADD', KEYS[3], now_s(), ARGV[1])
redis.call('DEL', KEYS[5])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('PERSIST', KEYS[1])
redis.call('PERSIST', KEYS[2])
for _, key in ipairs(job_keys(KEYS[1], KEYS[6], ARGV[1], ARGV[5])) do
  redis.call('PERSIST', key)
end
return current
"""
)

# A history note without a change of status (the stall sweep sent a step again); it
# counts as progress. KEYS: job, history, active.  ARGV: job_id, entry, now_iso
NOTE = (
    _COMMON
    + """
if not redis.call('HGET', KEYS[1], 'status') then return 0 end
redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('HSET', KEYS[1], 'updated_at', ARGV[3])
redis.call('ZADD', KEYS[3], 'XX', now_s(), ARGV[1])
return 1
"""
)

# Progress without a write of the job's own (a step waiting for a token before it can
# claim): the stall sweep must not take the job for lost. KEYS: active.  ARGV: job_id
TOUCH = _COMMON + "return redis.call('ZADD', KEYS[1], 'XX', now_s(), ARGV[1])"

# A succeeded job's event, if it is not out yet (jobs that succeeded under cardload 0.1,
# whose publish step ran separately). KEYS: job, stream.  ARGV: flag .. events kept ms
ANNOUNCE = (
    _COMMON
    + """
if redis.call('HGET', KEYS[1], 'status') ~= '$SUCCEEDED' then return 0 end
announce(KEYS[1], KEYS[2], unpack(ARGV, 1, 6))
return 1
"""
)

# The first message of each job sent: noted only on a record that still exists (one
# that finished and expired meanwhile must not come back as a stub).
# KEYS: the jobs' records.
MARK_DISPATCHED = """
for _, job in ipairs(KEYS) do
  if redis.call('EXISTS', job) == 1 then redis.call('HSET', job, 'dispatched', 1) end
end
return 0
"""

# Another key for a job (same content, another key), unless the key is taken: it
# expires as the job's own key does, so an unfinished job notes it for its success.
# KEYS: the key, the job's record, its aliases.  ARGV: value, keys kept ms
ALIAS = """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX') then return 0 end
local status = redis.call('HGET', KEYS[2], 'status')
if status == '$SUCCEEDED' or not status then  -- ended, or ended and forgotten
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
else
  redis.call('SADD', KEYS[3], KEYS[1])
end
return 1
"""

# A finished job forgotten by hand (``cardload jobs purge``): only in a status that may
# go, and only as it was read (a job replayed or written since is left alone). Its keys
# are deleted once past their period, else kept with what is left of it; its
# dead-letter entry goes with it.
# KEYS: job, history, aliases, dead-letter index, dead-letter entry.
# ARGV: 1 job_id, 2 updated_at as read ('' if none), 3 statuses that may go,
#       4 idempotency key prefix, 5 keys' ms left (<= 0: deleted)
# Reply: {0} left alone | {1, keys deleted, dead-letter entries deleted}
PURGE = (
    _COMMON
    + """
local status = redis.call('HGET', KEYS[1], 'status')
if not status or not member(ARGV[3], status) then return {0} end
if (redis.call('HGET', KEYS[1], 'updated_at') or '') ~= ARGV[2] then return {0} end
local left, deleted = tonumber(ARGV[5]), 0
for _, key in ipairs(job_keys(KEYS[1], KEYS[3], ARGV[1], ARGV[4])) do
  if left <= 0 then
    deleted = deleted + redis.call('DEL', key)
  elseif redis.call('PTTL', key) == -1 then  -- kept for good: written before retention
    redis.call('PEXPIRE', key, left)
  end
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
redis.call('ZREM', KEYS[4], ARGV[1])
return {1, deleted, redis.call('DEL', KEYS[5])}
"""
)


def _with_statuses(source: str) -> str:
    """Statuses come from :class:`JobStatus` (``$SUCCEEDED`` and so on), not literals."""
    return Template(source).substitute({status.name: status.value for status in JobStatus})


ADMIT, CLAIM, FINISH_STEP, SUCCEED, DEAD_LETTER, REOPEN, ANNOUNCE, ALIAS = map(
    _with_statuses, (ADMIT, CLAIM, FINISH_STEP, SUCCEED, DEAD_LETTER, REOPEN, ANNOUNCE, ALIAS)
)
