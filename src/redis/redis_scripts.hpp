// SPDX-License-Identifier: MIT
// Internal: the Lua scripts behind redis:// operations (also sent by the raw benchmark).
#ifndef LOCKKIT_SRC_REDIS_REDIS_SCRIPTS_HPP_
#define LOCKKIT_SRC_REDIS_REDIS_SCRIPTS_HPP_

namespace lockkit::detail::redis {

// KEYS: lock, fence counter, holder. ARGV: token, ttl in ms. Returns the fence, or 0 if busy.
// SET NX PX exactly as node-redlock and redsync do; the counter lives in the lock key's slot
// and starts at the server's time in microseconds, so fences keep increasing even after a
// restart that lost the counter (fence rates stay far below one per microsecond).
inline constexpr const char* kAcquireScript = R"lua(
if not redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 0 end
local f = redis.call('incr', KEYS[2])
if f == 1 then
  local t = redis.call('time')
  f = redis.call('incrby', KEYS[2], string.format('%.0f', t[1] * 1000000 + t[2] - 1))
end
redis.call('set', KEYS[3], ARGV[1] .. ':' .. string.format('%.0f', f), 'PX', ARGV[2])
return f
)lua";

// KEYS: lock, holder. ARGV: token. Compare-and-delete, as every Redlock client does.
inline constexpr const char* kReleaseScript = R"lua(
if redis.call('get', KEYS[1]) == ARGV[1] then
  redis.call('del', KEYS[1], KEYS[2])
  return 1
end
return 0
)lua";

// KEYS: lock, holder. ARGV: token, ttl in ms. Compare-and-pexpire.
inline constexpr const char* kExtendScript = R"lua(
if redis.call('get', KEYS[1]) == ARGV[1] then
  redis.call('pexpire', KEYS[1], ARGV[2])
  redis.call('pexpire', KEYS[2], ARGV[2])
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
local h = redis.call('get', KEYS[2])
local f = '0'
if h and #h > #v and string.sub(h, 1, #v + 1) == v .. ':' then f = string.sub(h, #v + 2) end
return {f, ttl}
)lua";

}  // namespace lockkit::detail::redis

#endif  // LOCKKIT_SRC_REDIS_REDIS_SCRIPTS_HPP_
