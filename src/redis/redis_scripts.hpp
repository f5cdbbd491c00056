// SPDX-License-Identifier: MIT
// Internal: the Lua scripts behind redis:// operations (also sent by the raw benchmark).
#ifndef LOCKKIT_SRC_REDIS_REDIS_SCRIPTS_HPP_
#define LOCKKIT_SRC_REDIS_REDIS_SCRIPTS_HPP_

#include <algorithm>
#include <array>
#include <cstddef>

namespace lockkit::detail::redis {

// The texts of string literals one after another, at compile time (a script's functions are
// written once and shared by the scripts that run them).
template <std::size_t... N>
constexpr auto join(const char (&... parts)[N]) {
  std::array<char, (N + ...) - sizeof...(N) + 1> out{};
  std::size_t at = 0;
  ((std::copy_n(parts, N - 1, out.begin() + at), at += N - 1), ...);
  return out;
}

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
// record goes too. While the lock holds our token its holder record is ours (or gone): only
// the acquire that set the lock writes a record there, and later writes (extend, the fence
// write-back) touch it only if it names our token. Deleting the record's two fields deletes
// the hash, and leaves a key of another type alone (WRONGTYPE, caught): one command, where
// reading the record's token first took two. (A Lua function, shared with kRedlockBatchScript.)
inline constexpr char kLuaRelease[] = R"lua(
local function release(lock, holder, token)
  if redis.call('get', lock) ~= token then return 0 end
  redis.call('del', lock)
  redis.pcall('hdel', holder, 'token', 'fence')
  return 1
end
)lua";
inline constexpr auto kReleaseText =
    join(kLuaRelease, "return release(KEYS[1], KEYS[2], ARGV[1])\n");
inline constexpr const char* kReleaseScript = kReleaseText.data();

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
// `node` caches the record within one script run (kRedlockBatchScript reads it once for all
// its acquires; only this function writes it, and the cache follows each write that succeeded).
inline constexpr char kLuaRedlockAcquire[] = R"lua(
local function redlock_acquire(node, lock, counter, holder, record, token, ttl, longest, run_id,
                               floor_s)
  if node.record ~= record then
    local m = redis.pcall('hmget', record, 'ttl', 'run')
    if m.err then return {-1, 0, ''} end
    node.record, node.ttl, node.run = record, tonumber(m[1]) or 0, m[2] or ''
  end
  local rec, run = node.ttl, node.run
  local w = {}
  if tonumber(longest) > rec then w[1] = 'ttl' w[2] = longest end
  if run_id ~= '' and run_id ~= run then w[#w + 1] = 'run' w[#w + 1] = run_id end
  if w[1] then
    redis.call('hset', record, unpack(w))
    node.ttl = math.max(rec, tonumber(longest))
    if run_id ~= '' then node.run = run_id end
  end
  if not redis.call('set', lock, token, 'NX', 'PX', ttl) then return {0, rec, run} end
  local c = redis.pcall('hget', counter, 'fence')
  if type(c) == 'table' then redis.call('del', lock) return {-1, rec, run} end
  local floor = tonumber(floor_s)
  local f = math.max((tonumber(c) or 0) + 1, floor)
  local fence = f == floor and floor_s or string.format('%.0f', f)
  if type(redis.pcall('hset', holder, 'token', token, 'fence', fence)) == 'table' then
    redis.call('del', lock)
    return {-1, rec, run}
  end
  redis.call('hset', counter, 'fence', fence)
  redis.call('pexpire', holder, ttl)
  return {f, rec, run}
end
)lua";
inline constexpr auto kRedlockAcquireText =
    join(kLuaRedlockAcquire,
         "return redlock_acquire({}, KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[2], "
         "ARGV[3], ARGV[4], ARGV[5])\n");
inline constexpr const char* kRedlockAcquireScript = kRedlockAcquireText.data();

// redlock://: writes the quorum's fence back. KEYS: fence counter, holder. ARGV: token, fence.
// The counter only moves up (counter = max(counter, fence)); our holder record shows the
// quorum's fence. Returns 1, or -1 if the counter's name holds a key that is not ours.
inline constexpr char kLuaRedlockSettle[] = R"lua(
local function redlock_settle(counter, holder, token, fence)
  local c = redis.pcall('hget', counter, 'fence')
  if type(c) == 'table' then return -1 end
  if (tonumber(c) or 0) < tonumber(fence) then redis.call('hset', counter, 'fence', fence) end
  if redis.pcall('hget', holder, 'token') == token then
    redis.call('hset', holder, 'fence', fence)
  end
  return 1
end
)lua";
inline constexpr auto kRedlockSettleText =
    join(kLuaRedlockSettle, "return redlock_settle(KEYS[1], KEYS[2], ARGV[1], ARGV[2])\n");
inline constexpr const char* kRedlockSettleScript = kRedlockSettleText.data();

// redlock://'s native client sends everything a node gets in one turn of its connection as one
// script run: the fixed cost of a script call (parsing, setting up KEYS and ARGV, the reply) is
// most of what a lock operation costs the server, so it is paid once for the lot. ARGV[1] names
// the operations in order, one letter each: 'a' redlock_acquire (4 keys, 5 args), 'r' release
// (2 keys, 1 arg), 's' redlock_settle (2 keys, 2 args); KEYS and the rest of ARGV are theirs in
// the same order. They run in that order, as separate calls would, and each gets its own reply
// in the returned array: one that fails (out of memory, say) is an error reply there and stops
// nothing else, as a failed call would.
inline constexpr auto kRedlockBatchText =
    join(kLuaRelease, kLuaRedlockAcquire, kLuaRedlockSettle, R"lua(
local ops, node, out, k, a = ARGV[1], {}, {}, 0, 1
for i = 1, #ops do
  local op, ok, r = string.byte(ops, i)
  if op == 97 then
    ok, r = pcall(redlock_acquire, node, KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4],
                  ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5])
    k, a = k + 4, a + 5
  elseif op == 114 then
    ok, r = pcall(release, KEYS[k + 1], KEYS[k + 2], ARGV[a + 1])
    k, a = k + 2, a + 1
  elseif op == 115 then
    ok, r = pcall(redlock_settle, KEYS[k + 1], KEYS[k + 2], ARGV[a + 1], ARGV[a + 2])
    k, a = k + 2, a + 2
  else
    return redis.error_reply('unknown operation')
  end
  if ok then
    out[i] = r
  elseif type(r) == 'table' and r.err then
    out[i] = r
  else
    out[i] = {err = tostring(r)}
  end
end
return out
)lua");
inline constexpr const char* kRedlockBatchScript = kRedlockBatchText.data();
// The most operations one run of kRedlockBatchScript carries: the server does nothing else while
// it runs (about 10 µs per operation).
inline constexpr std::size_t kMaxBatchOps = 64;

}  // namespace lockkit::detail::redis

#endif  // LOCKKIT_SRC_REDIS_REDIS_SCRIPTS_HPP_
