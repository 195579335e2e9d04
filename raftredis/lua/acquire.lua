-- acquire: take the lease if nobody holds it.
-- KEYS: 1 leader, 2 term, 3 leader copy
-- ARGV: 1 candidate id, 2 highest term the candidate has seen, 3 lease ttl ms,
--       4 control channel
-- Returns {"acquired", value, ttl ms} or {"held", value, pttl ms}, and then
-- "vanished" when the lease key was gone but its copy had not run out.
-- Safe to run twice: the second run finds the lease held (by us).
local current = on_own_key(KEYS[1], 'GET', KEYS[1])
if current then
  local pttl = redis.call('PTTL', KEYS[1])
  if pttl >= 0 and string.match(current, '^%d+ %S+ %d+$') then
    return {'held', current, pttl}
  end
  -- Not written by raftredis (no expiry or unknown format): replace it.
else
  -- Gone, but maybe not given up: evicted (maxmemory) or flushed. Its copy
  -- says until when it is held. (Ours: then take a new term as usual.)
  local copy = on_own_key(KEYS[3], 'GET', KEYS[3])
  local expiry = copy and lease_expiry(copy)
  if expiry and string.match(copy, '^%d+ (%S+) ') ~= ARGV[1] then
    local left = expiry - server_ms()
    if left > 0 then
      return {'held', copy, left, 'vanished'}
    end
  end
end
-- Terms are integers below 2^53 (exact in Lua's doubles), so the next term
-- must be too. Anything else in the term key was not written by raftredis
-- and is ignored.
local function sane(n)
  if n == nil or n ~= n or n < 0 or n >= 2^53 - 1 then return 0 end
  return math.floor(n)
end
local now = server_ms()
local stored = sane(tonumber(on_own_key(KEYS[2], 'GET', KEYS[2])))
-- The server's clock in ms is a floor for every new term. Without it, a
-- failover to a replica that missed the last election (or lost its data)
-- could hand out a term already used, if the winner never read it. With it,
-- a term taken later is larger, as long as the Redis servers' clocks agree to
-- within the time between two elections (at least a lease).
local term = math.max(stored, sane(tonumber(ARGV[2])), now) + 1
local value = fmt_int(term) .. ' ' .. ARGV[1] .. ' ' .. fmt_int(now + tonumber(ARGV[3]))
-- The first write fails on a Redis out of memory (noeviction): nothing is taken.
redis.call('SET', KEYS[2], fmt_int(term))
redis.call('SET', KEYS[1], value, 'PX', ARGV[3])
redis.call('SET', KEYS[3], value)
notice(ARGV[4], 'elected', ARGV[1], term)
return {'acquired', value, tonumber(ARGV[3])}
