// SPDX-License-Identifier: MIT
// Internal: the Lua scripts behind redis:// operations (also sent by the raw benchmark).
#ifndef LOCKKIT_SRC_REDIS_REDIS_SCRIPTS_HPP_
#define LOCKKIT_SRC_REDIS_REDIS_SCRIPTS_HPP_

namespace lockkit::detail::redis {

// Every internal key is a hash: a plain string there is somebody else's (a lock of another
// library), and no script ever writes, expires or deletes it. Names with "lockkit:{" are never
// lockkit lock keys under any prefix (rejected), so a hash there is our bookkeeping.
// Type checks cost nothing extra: the first command on each internal key is a hash command run
// with `redis.pcall`, which returns a WRONGTYPE error as a table (never a string or false) and
// writes nothing; the scripts stop there. Server time is what these scripts are measured in (the
// bound of every Redis lock benchmark), so each one runs as few commands as it can.

// KEYS: lock, fence counter, holder. ARGV: token, ttl in ms. Returns the fence, 0 if busy, -1 if
// an internal name is taken by a key that is not ours (the script then deletes the lock it has
// just set: scripts are atomic, so nobody saw it). Busy costs one command: the SET comes first.
// SET NX PX exactly as node-redlock and redsync do. The fence is max(counter + 1, server time in
// microseconds): a counter restored from an old snapshot (RDB, AOF everysec, a promoted replica)
// is overtaken at once, as long as the server's clock did not step back by more than the
// snapshot's age and fences stay below one per microsecond. The holder record is written before
// the counter, so a foreign key at the holder's name leaves the counter untouched too.
// string.format: a Lua number passed to Redis is printed with 14 digits, a fence has 16.
inline constexpr const char* kAcquireScript = R"lua(
if not redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 0 end
local c = redis.pcall('hget', KEYS[2], 'fence')
if type(c) == 'table' then redis.call('del', KEYS[1]) return -1 end
local t = redis.call('time')
local f = math.max((tonumber(c) or 0) + 1, t[1] * 1000000 + t[2])
local fence = string.format('%.0f', f)
if type(redis.pcall('hset', KEYS[3], 'token', ARGV[1], 'fence', fence)) == 'table' then
  redis.call('del', KEYS[1])
  return -1
end
redis.call('hset', KEYS[2], 'fence', fence)
redis.call('pexpire', KEYS[3], ARGV[2])
return f
)lua";

// KEYS: lock, holder. ARGV: token. Compare-and-delete, as every Redlock client does; the holder
// record goes too if it is ours.
inline constexpr const char* kReleaseScript = R"lua(
if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('del', KEYS[1])
if redis.pcall('hget', KEYS[2], 'token') == ARGV[1] then redis.call('del', KEYS[2]) end
return 1
)lua";

// KEYS: lock, holder. ARGV: token, ttl in ms. Compare-and-pexpire.
inline constexpr const char* kExtendScript = R"lua(
if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('pexpire', KEYS[1], ARGV[2])
if redis.pcall('hget', KEYS[2], 'token') == ARGV[1] then redis.call('pexpire', KEYS[2], ARGV[2]) end
return 1
)lua";

// KEYS: lock, holder. Returns nil if free (or not a lock), else {fence or "0", remaining ms}.
// A lock without our holder record (taken by another library) shows fence 0. PTTL says 0 in the
// last millisecond of a key's life, while the key still exists and its holder can still extend
// it: that lease is held, with 0 ms left (saying "free" there let an extend revive a lease that
// status had called gone).
inline constexpr const char* kStatusScript = R"lua(
local v = redis.pcall('get', KEYS[1])
if type(v) ~= 'string' then return nil end
local ttl = redis.call('pttl', KEYS[1])
if ttl < 0 then return nil end
local h = redis.pcall('hmget', KEYS[2], 'token', 'fence')
if h[1] == v and h[2] then return {h[2], ttl} end
return {'0', ttl}
)lua";

// redlock://: the acquire of kAcquireScript plus the node's bookkeeping for the quorum. KEYS:
// lock, fence counter, holder, node record (hash at prefix + "lockkit:{redlock}"). ARGV: token,
// ttl in ms, the longest ttl in use (ms) to record, the run id to record ("" = leave it), and
// the client's clock in microseconds: the fence is max(counter + 1, that clock), so in the common
// case every node of a round returns the same fence and no write-back round is needed.
// The record's ttl only grows and is written even when busy, so every node that answers knows
// the longest ttl any client used; the record is written only when it changes (one HSET for
// both fields). Returns {fence or 0 (busy) or -1 (foreign key), the recorded ttl before this
// call, the recorded run id before this call}. Same lock key and value as kAcquireScript, so
// node-redlock and redsync contend with it.
inline constexpr const char* kRedlockAcquireScript = R"lua(
local m = redis.pcall('hmget', KEYS[4], 'ttl', 'run')
if m.err then return {-1, 0, ''} end
local rec = tonumber(m[1]) or 0
local run = m[2] or ''
local w = {}
if tonumber(ARGV[3]) > rec then w[1] = 'ttl' w[2] = ARGV[3] end
if ARGV[4] ~= '' and ARGV[4] ~= run then w[#w + 1] = 'run' w[#w + 1] = ARGV[4] end
if w[1] then redis.call('hset', KEYS[4], unpack(w)) end
if not redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {0, rec, run} end
local c = redis.pcall('hget', KEYS[2], 'fence')
if type(c) == 'table' then redis.call('del', KEYS[1]) return {-1, rec, run} end
local floor = tonumber(ARGV[5])
local f = math.max((tonumber(c) or 0) + 1, floor)
local fence = f == floor and ARGV[5] or string.format('%.0f', f)
if type(redis.pcall('hset', KEYS[3], 'token', ARGV[1], 'fence', fence)) == 'table' then
  redis.call('del', KEYS[1])
  return {-1, rec, run}
end
redis.call('hset', KEYS[2], 'fence', fence)
redis.call('pexpire', KEYS[3], ARGV[2])
return {f, rec, run}
)lua";

// redlock://: writes the quorum's fence back. KEYS: fence counter, holder. ARGV: token, fence.
// The counter only moves up (counter = max(counter, fence)); our holder record shows the
// quorum's fence. Returns 1, or -1 if the counter's name holds a key that is not ours.
inline constexpr const char* kRedlockSettleScript = R"lua(
local c = redis.pcall('hget', KEYS[1], 'fence')
if type(c) == 'table' then return -1 end
if (tonumber(c) or 0) < tonumber(ARGV[2]) then redis.call('hset', KEYS[1], 'fence', ARGV[2]) end
if redis.pcall('hget', KEYS[2], 'token') == ARGV[1] then
  redis.call('hset', KEYS[2], 'fence', ARGV[2])
end
return 1
)lua";

}  // namespace lockkit::detail::redis

#endif  // LOCKKIT_SRC_REDIS_REDIS_SCRIPTS_HPP_
