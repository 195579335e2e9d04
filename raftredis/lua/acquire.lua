-- acquire: take the lease if nobody holds it.
-- KEYS: 1 leader, 2 term, 3 leader copy, 4 takeover suspicion (fast failover),
--       5 the term whose holder proves its presence (fast failover)
-- ARGV: 1 candidate id, 2 highest term the candidate has seen, 3 lease ttl ms,
--       4 control channel, 5 our presence channel with fast failover, or ""
-- Returns {"acquired", value, ttl ms, present} or {"held", value, pttl ms}, and
-- then "vanished" when the lease key was gone but its copy had not run out.
-- present (fast failover): 1 if our presence channel has a listener now, the
-- first proof that our presence connection is alive; 0 without fast failover.
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
local value = take_lease(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
local counted = false
if ARGV[5] ~= '' then
  redis.call('DEL', KEYS[4])  -- a suspicion about an earlier holder is over
  counted = listeners(ARGV[5]) > 0
end
local present = register_presence(KEYS[5], value, counted)
return {'acquired', value, tonumber(ARGV[3]), present}
