package queue

import "github.com/redis/go-redis/v9"

// Every change of a job's state is one Lua script, so that a crash or a
// race between workers never leaves half a change behind. The scripts share
// the prelude below; each is called with KEYS[1] = the stream (which routes
// it to the project's slot on a cluster: every other key it touches shares
// the hash tag) and ARGV[1..3] = the key prefix, now as RFC 3339 text (with
// nine digits of fraction, timeText, so that times compare as text) and now
// as unix milliseconds. Each returns a table whose first element is a status
// and whose second is a flat list of (kind, event) pairs for Options.OnEvent.
//
// Fields of the job hash: id kind args description max_attempts parent
// state attempts progress worker created_at started_at finished_at
// next_attempt_at last_error result, and the bookkeeping ones:
//
//	entry            the stream entry that currently stands for the job: the
//	                 one a worker runs it from, or delivers its hook by.
//	                 Any other entry of the job is stale. Changing it is how a
//	                 worker's ownership of an attempt is revoked.
//	hook             a hook owed for the job: retrying, failed or cancelled.
//	cancel_requested set while a running job is asked to stop.
//	active_children  children not yet in a final state.
//	child_failed     "<id> failed: <error>" of the first child that failed.
//	child_cancelled  the id of the first child that was cancelled.
//	last_child_at    the latest finished_at of the children that finished.
const prelude = `
local P, NOW, NOWMS = ARGV[1], ARGV[2], ARGV[3]
local STREAM, GROUP = P .. 'stream', 'workers'
local DELAYED, INDEX, FINISHED = P .. 'delayed', P .. 'index', P .. 'finished'
local KEYS_ = P .. 'keys'
local CHANNEL = P .. 'cancel'
local function jkey(id) return P .. 'job:' .. id end
local function ckey(id) return P .. 'children:' .. id end

local events = {}
local function emit(id, name)
  events[#events + 1] = redis.call('HGET', jkey(id), 'kind') or ''
  events[#events + 1] = name
end

local function record(id)
  return {redis.call('HGETALL', jkey(id)), redis.call('LRANGE', ckey(id), 0, -1)}
end

-- t9 returns time t, RFC 3339 text in UTC, with all nine digits of its
-- fraction, so that times compare as their text does: an earlier release
-- wrote the fraction without its trailing zeros.
local function t9(t)
  local head, frac = string.match(t or '', '^(.*%d%d:%d%d:%d%d)%.?(%d*)Z$')
  if not head or #frac > 9 then return t end
  return head .. '.' .. frac .. string.rep('0', 9 - #frac) .. 'Z'
end

local function isdone(state)
  return state == 'succeeded' or state == 'failed' or state == 'cancelled'
end

-- enqueue adds a stream entry for job id, which becomes the job's entry.
local function enqueue(id)
  local eid = redis.call('XADD', STREAM, '*', 'id', id)
  redis.call('HSET', jkey(id), 'entry', eid)
  return eid
end

-- drop acknowledges and deletes stream entry eid, and forgets it as the
-- entry of job id when id is given.
local function drop(id, eid)
  redis.call('XACK', STREAM, GROUP, eid)
  redis.call('XDEL', STREAM, eid)
  if id and redis.call('HGET', jkey(id), 'entry') == eid then
    redis.call('HDEL', jkey(id), 'entry')
  end
end

-- finish moves job id to a final state, with reason as its last error when
-- given. When hook is given, the hook is owed: the job's entry delivers it,
-- or a new entry when the job holds none.
local function finish(id, state, reason, hook)
  local k = jkey(id)
  -- A parent finishes no earlier than its last child, whose time another
  -- worker's clock, a moment ahead, may have stamped.
  local at = NOW
  local last = redis.call('HGET', k, 'last_child_at')
  if last and last > at then at = last end -- both t9's
  redis.call('HSET', k, 'state', state, 'finished_at', at)
  redis.call('HDEL', k, 'next_attempt_at', 'cancel_requested')
  if reason then redis.call('HSET', k, 'last_error', reason) end
  redis.call('ZREM', DELAYED, id)
  redis.call('ZADD', FINISHED, NOWMS, id)
  if hook then
    redis.call('HSET', k, 'hook', hook)
    if redis.call('HEXISTS', k, 'entry') == 0 then enqueue(id) end
  end
  emit(id, state)
end

-- conclude returns the final state, reason and hook of a job whose own part
-- is done and whose children have all finished.
local function conclude(id)
  local f, c = unpack(redis.call('HMGET', jkey(id), 'child_failed', 'child_cancelled'))
  if f then return 'failed', 'child job ' .. f, 'failed' end
  if c then return 'cancelled', 'child job ' .. c .. ' was cancelled', 'cancelled' end
  return 'succeeded', false, false
end

-- settle tells the parent of job id, which has just reached a final state,
-- that one of its children finished; a waiting parent whose last child it
-- was finishes too, and so on up the tree.
local function settle(id)
  while true do
    local parent, state, lasterr = unpack(redis.call('HMGET', jkey(id), 'parent', 'state', 'last_error'))
    if not parent or parent == '' then return end
    local pk = jkey(parent)
    if redis.call('EXISTS', pk) == 0 then return end
    local n = redis.call('HINCRBY', pk, 'active_children', -1)
    local at = t9(redis.call('HGET', jkey(id), 'finished_at'))
    if at and at > (redis.call('HGET', pk, 'last_child_at') or '') then
      redis.call('HSET', pk, 'last_child_at', at)
    end
    if state == 'failed' then
      redis.call('HSETNX', pk, 'child_failed', id .. ' failed: ' .. (lasterr or ''))
    elseif state == 'cancelled' then
      redis.call('HSETNX', pk, 'child_cancelled', id)
    end
    if n > 0 or redis.call('HGET', pk, 'state') ~= 'waiting' then return end
    local s, reason, hook = conclude(parent)
    finish(parent, s, reason, hook)
    id = parent
  end
end

-- cancel cancels job id and its active descendants: a running job is asked
-- to stop (its worker finishes it), any other active job is cancelled at
-- once and owes its Cancelled hook.
local cancel
local function cancelChildren(id, reason)
  for _, c in ipairs(redis.call('LRANGE', ckey(id), 0, -1)) do cancel(c, reason) end
end
cancel = function(id, reason)
  local k = jkey(id)
  local state, requested = unpack(redis.call('HMGET', k, 'state', 'cancel_requested'))
  if not state or isdone(state) then return end
  if state == 'running' then
    if not requested then
      redis.call('HSET', k, 'cancel_requested', NOW, 'last_error', reason)
      redis.call('PUBLISH', CHANNEL, id)
    end
  else
    finish(id, 'cancelled', reason, 'cancelled')
  end
  cancelChildren(id, 'parent job ' .. id .. ' was cancelled')
  if state ~= 'running' then settle(id) end
end

-- stopped finishes a running job whose cancellation was requested, once its
-- worker let go of it.
local function stopped(id, eid)
  finish(id, 'cancelled', false, false)
  drop(id, eid)
  cancelChildren(id, 'parent job ' .. id .. ' was cancelled')
  settle(id)
end

-- current returns the state of job id when eid is its entry and it is
-- running; otherwise the status to return: 'hook' (with the hook owed)
-- when an earlier call for the same entry went through, else 'lost'.
local function current(id, eid)
  local state, entry, hook = unpack(redis.call('HMGET', jkey(id), 'state', 'entry', 'hook'))
  if entry ~= eid then return false, 'lost' end
  if state ~= 'running' then
    if hook then return false, 'hook', hook end
    return false, 'lost'
  end
  return state
end
`

func script(body string) *redis.Script { return redis.NewScript(prelude + body) }

// scriptSubmit creates a job. ARGV[4..10]: id kind args description
// max_attempts parent key. Status ok (with the record; of the job already
// submitted with the key, if any), exists (the id is taken), noparent, or
// parentdone (with the parent's state).
var scriptSubmit = script(`
local id, parent, key = ARGV[4], ARGV[9], ARGV[10]
local k = jkey(id)
if key ~= '' then
  local prior = redis.call('HGET', KEYS_, key)
  if prior and redis.call('EXISTS', jkey(prior)) == 1 then return {'ok', events, record(prior)} end
end
if redis.call('EXISTS', k) == 1 then return {'exists', events} end
if parent ~= '' then
  local pk = jkey(parent)
  local pstate, requested = unpack(redis.call('HMGET', pk, 'state', 'cancel_requested'))
  if not pstate then return {'noparent', events} end
  if isdone(pstate) then return {'parentdone', events, pstate} end
  if requested then return {'parentdone', events, 'being cancelled'} end
  redis.call('RPUSH', ckey(parent), id)
  redis.call('HINCRBY', pk, 'active_children', 1)
end
redis.call('HSET', k, 'id', id, 'kind', ARGV[5], 'args', ARGV[6], 'description', ARGV[7],
  'max_attempts', ARGV[8], 'parent', parent, 'state', 'queued', 'attempts', 0, 'created_at', NOW)
if key ~= '' then
  redis.call('HSET', k, 'key', key)
  redis.call('HSET', KEYS_, key, id)
end
redis.call('ZADD', INDEX, NOWMS, id)
enqueue(id)
emit(id, 'submitted')
return {'ok', events, record(id)}
`)

// scriptCancel cancels a job and its active descendants. ARGV[4]: id.
// Status ok (with the record) or missing.
var scriptCancel = script(`
local id = ARGV[4]
if redis.call('EXISTS', jkey(id)) == 0 then return {'missing', events} end
cancel(id, 'cancelled by request')
return {'ok', events, record(id)}
`)

// scriptClaim decides what a worker does with a delivered entry. ARGV[4..]:
// id, entry, worker, the score to release an unhandled job until, then the
// kinds the worker handles. Status run (the job is now running; with the
// record), hook (with the record and the hook), release (the worker has no
// handler: the job waits in the delayed set for another), or gone, stale,
// skip (nothing to do).
var scriptClaim = script(`
local id, eid, worker, releaseAt = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local k = jkey(id)
local state, entry, hook, kind = unpack(redis.call('HMGET', k, 'state', 'entry', 'hook', 'kind'))
if not state then drop(false, eid); return {'gone', events} end
if entry ~= eid then drop(false, eid); return {'stale', events} end
local handled = false
for i = 8, #ARGV do
  if ARGV[i] == kind then handled = true; break end
end
if not handled then
  drop(id, eid)
  redis.call('ZADD', DELAYED, 'GT', releaseAt, id)
  return {'release', events}
end
if hook == 'retrying' and state ~= 'retrying' then
  redis.call('HDEL', k, 'hook')
  hook = false
end
if hook then return {'hook', events, record(id), hook} end
if state ~= 'queued' then
  if state ~= 'running' then drop(id, eid) end
  return {'skip', events}
end
redis.call('HINCRBY', k, 'attempts', 1)
redis.call('HSET', k, 'state', 'running', 'worker', worker)
redis.call('HSETNX', k, 'started_at', NOW)
emit(id, 'started')
return {'run', events, record(id)}
`)

// scriptTouch is a worker's heartbeat for the entry it holds: it resets the
// entry's idle time and stores the job's progress when given. ARGV[4..7]:
// id, entry, consumer, progress (” for unchanged). Returns -1 when the
// entry no longer stands for the job (the worker lost it), 1 when the job's
// cancellation was requested, else 0.
var scriptTouch = script(`
local id, eid, consumer, progress = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local k = jkey(id)
local entry, requested = unpack(redis.call('HMGET', k, 'entry', 'cancel_requested'))
if entry ~= eid then return -1 end
if progress ~= '' then redis.call('HSET', k, 'progress', progress) end
redis.call('XCLAIM', STREAM, GROUP, consumer, 0, eid, 'JUSTID')
if requested then return 1 end
return 0
`)

// scriptSucceed records that a job's handler returned without error.
// ARGV[4..7]: id, entry, result, progress. Status succeeded, waiting,
// cancelled, hook (with the record and the hook; the worker calls it and
// then scriptHookDone) or lost.
var scriptSucceed = script(`
local id, eid, result, progress = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local k = jkey(id)
local state, status, owed = current(id, eid)
if not state then
  if status == 'hook' then return {'hook', events, record(id), owed} end
  return {status, events}
end
if progress ~= '' then redis.call('HSET', k, 'progress', progress) end
if redis.call('HEXISTS', k, 'cancel_requested') == 1 then
  stopped(id, eid)
  return {'cancelled', events}
end
redis.call('HSET', k, 'result', result)
if tonumber(redis.call('HGET', k, 'active_children') or '0') > 0 then
  redis.call('HSET', k, 'state', 'waiting')
  drop(id, eid)
  return {'waiting', events}
end
local s, reason, hook = conclude(id)
finish(id, s, reason, hook)
settle(id)
if hook then return {'hook', events, record(id), hook} end
drop(id, eid)
return {s, events}
`)

// scriptFail records that a job's handler returned an error. ARGV[4..9]:
// id, entry, error, permanent ('1' or '0'), progress, the retry's due time
// as unix milliseconds, then as text. Status hook (with the record and the
// hook: retrying or failed), cancelled or lost.
var scriptFail = script(`
local id, eid, err, permanent, progress, dueMs, dueText = ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10]
local k = jkey(id)
local state, status, owed = current(id, eid)
if not state then
  if status == 'hook' then return {'hook', events, record(id), owed} end
  return {status, events}
end
if progress ~= '' then redis.call('HSET', k, 'progress', progress) end
if redis.call('HEXISTS', k, 'cancel_requested') == 1 then
  stopped(id, eid)
  return {'cancelled', events}
end
local attempts, max = unpack(redis.call('HMGET', k, 'attempts', 'max_attempts'))
if permanent == '1' or tonumber(attempts) >= tonumber(max) then
  finish(id, 'failed', err, 'failed')
  cancelChildren(id, 'parent job ' .. id .. ' failed')
  settle(id)
  return {'hook', events, record(id), 'failed'}
end
redis.call('HSET', k, 'state', 'retrying', 'last_error', err, 'next_attempt_at', dueText, 'hook', 'retrying')
redis.call('ZADD', DELAYED, dueMs, id)
emit(id, 'retried')
return {'hook', events, record(id), 'retrying'}
`)

// scriptRelease gives a running job back to the queue without counting the
// attempt, when its worker shuts down. ARGV[4..6]: id, entry, progress.
// Status released, cancelled or lost.
var scriptRelease = script(`
local id, eid, progress = ARGV[4], ARGV[5], ARGV[6]
local k = jkey(id)
if not current(id, eid) then return {'lost', events} end
if progress ~= '' then redis.call('HSET', k, 'progress', progress) end
if redis.call('HEXISTS', k, 'cancel_requested') == 1 then
  stopped(id, eid)
  return {'cancelled', events}
end
redis.call('HINCRBY', k, 'attempts', -1)
redis.call('HSET', k, 'state', 'queued')
drop(id, eid)
enqueue(id)
return {'released', events}
`)

// scriptHookDone records that a worker called (or had no) hook for an
// entry. ARGV[4..6]: id, entry, hook. When another hook became owed
// meanwhile, a new entry delivers it.
var scriptHookDone = script(`
local id, eid, hook = ARGV[4], ARGV[5], ARGV[6]
local k = jkey(id)
if redis.call('EXISTS', k) == 0 then drop(false, eid); return {'gone', events} end
local owed = redis.call('HGET', k, 'hook')
if owed == hook then
  redis.call('HDEL', k, 'hook')
  owed = false
end
drop(id, eid)
if owed and redis.call('HEXISTS', k, 'entry') == 0 then enqueue(id) end
return {'ok', events}
`)

// scriptMove queues the delayed jobs that are due. ARGV[4]: the most to
// move. Status: the number moved.
var scriptMove = script(`
local ids = redis.call('ZRANGEBYSCORE', DELAYED, '-inf', NOWMS, 'LIMIT', 0, ARGV[4])
for _, id in ipairs(ids) do
  redis.call('ZREM', DELAYED, id)
  local k = jkey(id)
  local state, hook, entry = unpack(redis.call('HMGET', k, 'state', 'hook', 'entry'))
  if state == 'retrying' then
    redis.call('HSET', k, 'state', 'queued')
    redis.call('HDEL', k, 'next_attempt_at')
    if hook == 'retrying' then redis.call('HDEL', k, 'hook') end
    enqueue(id)
  elseif state and (state == 'queued' or hook) and not entry then
    enqueue(id)
  end
end
return {#ids, events}
`)

// scriptReclaim takes over the entries whose consumer has been silent for
// the lapse. ARGV[4..6]: lapse in milliseconds, lapse as text, the most
// entries to look at. Status: the number of running jobs taken from a
// silent worker.
var scriptReclaim = script(`
local lapseMs, lapseText, limit = ARGV[4], ARGV[5], ARGV[6]
local pending = redis.pcall('XPENDING', STREAM, GROUP, 'IDLE', lapseMs, '-', '+', limit)
if type(pending) ~= 'table' or pending.err then return {0, events} end
local n = 0
for _, p in ipairs(pending) do
  local eid = p[1]
  local id = false
  local r = redis.call('XRANGE', STREAM, eid, eid)
  if #r > 0 then
    local f = r[1][2]
    for i = 1, #f, 2 do
      if f[i] == 'id' then id = f[i + 1] end
    end
  end
  if not id then
    redis.call('XACK', STREAM, GROUP, eid)
  else
    local k = jkey(id)
    local state, entry, hook, attempts, max, worker, requested = unpack(redis.call('HMGET', k,
      'state', 'entry', 'hook', 'attempts', 'max_attempts', 'worker', 'cancel_requested'))
    if not state or entry ~= eid then
      drop(false, eid)
    elseif hook or state == 'queued' then
      drop(id, eid)
      enqueue(id)
    elseif state == 'running' then
      n = n + 1
      emit(id, 'reclaimed')
      if requested then
        stopped(id, eid)
      else
        drop(id, eid)
        local msg = 'worker ' .. (worker or '?') .. ' stopped answering (no heartbeat for ' .. lapseText .. ')'
        if tonumber(attempts) < tonumber(max) then
          redis.call('HSET', k, 'state', 'queued', 'last_error', msg)
          enqueue(id)
        else
          finish(id, 'failed', msg, 'failed')
          cancelChildren(id, 'parent job ' .. id .. ' failed')
          settle(id)
        end
      end
    else
      drop(id, eid)
    end
  end
end
return {n, events}
`)

// scriptExpire deletes finished jobs: those finished before a cutoff, and
// the oldest beyond a count. ARGV[4..6]: the cutoff in unix milliseconds,
// the most finished jobs to keep, the most to delete. Status: the number
// deleted.
var scriptExpire = script(`
local cutoff, keep, limit = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
local ids = redis.call('ZRANGEBYSCORE', FINISHED, '-inf', cutoff, 'LIMIT', 0, limit)
local excess = redis.call('ZCARD', FINISHED) - #ids - keep
if excess > 0 and #ids < limit then
  local more = redis.call('ZRANGE', FINISHED, #ids, #ids + math.min(excess, limit - #ids) - 1)
  for _, id in ipairs(more) do ids[#ids + 1] = id end
end
for _, id in ipairs(ids) do
  local k = jkey(id)
  local entry, key = unpack(redis.call('HMGET', k, 'entry', 'key'))
  if entry then drop(false, entry) end
  if key and redis.call('HGET', KEYS_, key) == id then redis.call('HDEL', KEYS_, key) end
  redis.call('DEL', k, ckey(id))
  redis.call('ZREM', FINISHED, id)
  redis.call('ZREM', INDEX, id)
  redis.call('ZREM', DELAYED, id)
end
return {#ids, events}
`)

// scriptTidy trims the stream below its oldest entry still needed (every
// entry older than both the oldest pending one and the last delivered one
// was acknowledged), and deletes consumers that hold no entry and have been
// idle for a while. ARGV[4..5]: the idle time in milliseconds, the calling
// consumer. Status: the number of consumers deleted.
var scriptTidy = script(`
local idleMs, me = tonumber(ARGV[4]), ARGV[5]
local groups = redis.pcall('XINFO', 'GROUPS', STREAM)
if type(groups) ~= 'table' or groups.err then return {0, events} end
local last = false
for _, g in ipairs(groups) do
  local name, ld
  for i = 1, #g, 2 do
    if g[i] == 'name' then name = g[i + 1] elseif g[i] == 'last-delivered-id' then ld = g[i + 1] end
  end
  if name == GROUP then last = ld end
end
if not last then return {0, events} end
local summary = redis.call('XPENDING', STREAM, GROUP)
local minid = last
if tonumber(summary[1]) > 0 then minid = summary[2] end
redis.call('XTRIM', STREAM, 'MINID', minid)
local n = 0
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', STREAM, GROUP)) do
  local name, pending, idle
  for i = 1, #c, 2 do
    if c[i] == 'name' then name = c[i + 1]
    elseif c[i] == 'pending' then pending = tonumber(c[i + 1])
    elseif c[i] == 'idle' then idle = tonumber(c[i + 1]) end
  end
  if name ~= me and pending == 0 and idle and idle > idleMs then
    redis.call('XGROUP', 'DELCONSUMER', STREAM, GROUP, name)
    n = n + 1
  end
end
return {n, events}
`)
