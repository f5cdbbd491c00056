// SPDX-License-Identifier: MIT
// Internal: the Lua scripts behind redis:// operations (also sent by the raw benchmark).
#ifndef LOCKKIT_SRC_REDIS_REDIS_SCRIPTS_HPP_
#define LOCKKIT_SRC_REDIS_REDIS_SCRIPTS_HPP_

namespace lockkit::detail::redis {

// Every internal key is a hash: a plain string there is somebody else's (a lock of another
// library), and no script ever writes, expires or deletes it. Names with "lockkit:{" are never
// lockkit lock keys under any prefix (rejected), so a hash there is our bookkeeping.

// KEYS: lock, fence counter, holder. ARGV: token, ttl in ms. Returns the fence, 0 if busy, -1 if
// an internal name is taken by a key that is not ours (the script then deletes the lock it has
// just set: scripts are atomic, so nobody saw it). Busy costs one command: the SET comes first.
// SET NX PX exactly as node-redlock and redsync do. The fence is max(counter + 1, server time in
// microseconds): a counter restored from an old snapshot (RDB, AOF everysec, a promoted replica)
// is overtaken at once, as long as the server's clock did not step back by more than the
// snapshot's age and fences stay below one per microsecond.
inline constexpr const char* kAcquireScript = R"lua(
if not redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 0 end
local holder = redis.call('type', KEYS[3]).ok
local counter = redis.call('type', KEYS[2]).ok
if (holder ~= 'none' and holder ~= 'hash') or (counter ~= 'none' and counter ~= 'hash') then
  redis.call('del', KEYS[1])
  return -1
end
local t = redis.call('time')
local f = math.max(tonumber(redis.call('hget', KEYS[2], 'fence') or '0') + 1,
                   tonumber(t[1]) * 1000000 + tonumber(t[2]))
local fence = string.format('%.0f', f)
redis.call('hset', KEYS[2], 'fence', fence)
if holder == 'hash' then redis.call('del', KEYS[3]) end
redis.call('hset', KEYS[3], 'token', ARGV[1], 'fence', fence)
redis.call('pexpire', KEYS[3], ARGV[2])
return f
)lua";

// KEYS: lock, holder. ARGV: token. Compare-and-delete, as every Redlock client does; the holder
// record goes too if it is ours.
inline constexpr const char* kReleaseScript = R"lua(
if redis.call('get', KEYS[1]) == ARGV[1] then
  redis.call('del', KEYS[1])
  if redis.call('type', KEYS[2]).ok == 'hash' and redis.call('hget', KEYS[2], 'token') == ARGV[1] then
    redis.call('del', KEYS[2])
  end
  return 1
end
return 0
)lua";

// KEYS: lock, holder. ARGV: token, ttl in ms. Compare-and-pexpire.
inline constexpr const char* kExtendScript = R"lua(
if redis.call('get', KEYS[1]) == ARGV[1] then
  redis.call('pexpire', KEYS[1], ARGV[2])
  if redis.call('type', KEYS[2]).ok == 'hash' and redis.call('hget', KEYS[2], 'token') == ARGV[1] then
    redis.call('pexpire', KEYS[2], ARGV[2])
  end
  return 1
end
return 0
)lua";

// KEYS: lock, holder. Returns nil if free (or not a lock), else {fence or "0", remaining ms}.
// A lock without our holder record (taken by another library) shows fence 0.
inline constexpr const char* kStatusScript = R"lua(
if redis.call('type', KEYS[1]).ok ~= 'string' then return nil end
local ttl = redis.call('pttl', KEYS[1])
if ttl <= 0 then return nil end
local v = redis.call('get', KEYS[1])
local f = '0'
if redis.call('type', KEYS[2]).ok == 'hash' then
  local h = redis.call('hmget', KEYS[2], 'token', 'fence')
  if h[1] == v and h[2] then f = h[2] end
end
return {f, ttl}
)lua";

// redlock://: the acquire of kAcquireScript plus the node's bookkeeping for the quorum. KEYS:
// lock, fence counter, holder, node record (hash at prefix + "lockkit:{redlock}"). ARGV: token,
// ttl in ms, the longest ttl in use (ms) to record, the run id to record ("" = leave it), and
// the client's clock in microseconds: the fence is max(counter + 1, that clock), so in the common
// case every node of a round returns the same fence and no write-back round is needed.
// The record's ttl only grows and is written even when busy, so every node that answers knows
// the longest ttl any client used. Returns {fence or 0 (busy) or -1 (foreign key), the recorded
// ttl before this call, the recorded run id before this call}. Same lock key and value as
// kAcquireScript, so node-redlock and redsync contend with it.
inline constexpr const char* kRedlockAcquireScript = R"lua(
local mt = redis.call('type', KEYS[4]).ok
if mt ~= 'none' and mt ~= 'hash' then return {-1, 0, ''} end
local rec = tonumber(redis.call('hget', KEYS[4], 'ttl') or '0')
local run = redis.call('hget', KEYS[4], 'run') or ''
if tonumber(ARGV[3]) > rec then redis.call('hset', KEYS[4], 'ttl', ARGV[3]) end
if ARGV[4] ~= '' and ARGV[4] ~= run then redis.call('hset', KEYS[4], 'run', ARGV[4]) end
if not redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {0, rec, run} end
local holder = redis.call('type', KEYS[3]).ok
local counter = redis.call('type', KEYS[2]).ok
if (holder ~= 'none' and holder ~= 'hash') or (counter ~= 'none' and counter ~= 'hash') then
  redis.call('del', KEYS[1])
  return {-1, rec, run}
end
local f = math.max(tonumber(redis.call('hget', KEYS[2], 'fence') or '0') + 1, tonumber(ARGV[5]))
local fence = string.format('%.0f', f)
redis.call('hset', KEYS[2], 'fence', fence)
if holder == 'hash' then redis.call('del', KEYS[3]) end
redis.call('hset', KEYS[3], 'token', ARGV[1], 'fence', fence)
redis.call('pexpire', KEYS[3], ARGV[2])
return {f, rec, run}
)lua";

// redlock://: writes the quorum's fence back. KEYS: fence counter, holder. ARGV: token, fence.
// The counter only moves up (counter = max(counter, fence)); our holder record shows the
// quorum's fence. Returns 1.
inline constexpr const char* kRedlockSettleScript = R"lua(
if redis.call('type', KEYS[1]).ok ~= 'hash' and redis.call('type', KEYS[1]).ok ~= 'none' then
  return -1
end
if tonumber(redis.call('hget', KEYS[1], 'fence') or '0') < tonumber(ARGV[2]) then
  redis.call('hset', KEYS[1], 'fence', ARGV[2])
end
if redis.call('type', KEYS[2]).ok == 'hash' and redis.call('hget', KEYS[2], 'token') == ARGV[1] then
  redis.call('hset', KEYS[2], 'fence', ARGV[2])
end
return 1
)lua";

}  // namespace lockkit::detail::redis

#endif  // LOCKKIT_SRC_REDIS_REDIS_SCRIPTS_HPP_
