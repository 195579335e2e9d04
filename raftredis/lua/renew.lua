-- renew: extend the lease, only if we still hold it.
-- KEYS: 1 leader, 2 leader copy, 3 term, 4 takeover suspicion (fast failover)
-- ARGV: 1 owner prefix "<term> <id> ", 2 new value (same prefix, new expiry),
--       3 lease ttl ms, 4 our term, 5 the expiry (server ms) of the value we
--       wrote last, 6 "1" to update the lease's copy (on a Redis that may
--       evict; elsewhere the copy written by acquire goes stale, harmlessly:
--       its expiry is never later than the lease's), 7 "1" to drop a suspicion
--       (fast failover: the first renew after our presence connection
--       subscribed again; see takeover.lua)
-- Returns {"renewed"}, {"renewed", "restored"} (the lease key had vanished
-- before it ran out, and is back), {"lost"} or {"taken", value, pttl ms}.
-- One SET ... XX GET does the common case in a single call (GET + PEXPIRE
-- would be two). When the lease is not ours the old value is put back, in the
-- same atomic script, so nobody ever sees ours; the holder's lease then ends
-- ttl from now, later than the holder itself believes: the safe direction.
-- Safe to run twice.
local old = on_own_key(KEYS[1], 'SET', KEYS[1], ARGV[2], 'XX', 'PX', ARGV[3], 'GET')
if old then
  if string.sub(old, 1, #ARGV[1]) == ARGV[1] then
    if ARGV[6] == '1' then
      redis.call('SET', KEYS[2], ARGV[2])
    end
    if ARGV[7] == '1' then
      redis.call('DEL', KEYS[4])
    end
    return {'renewed'}
  end
  redis.call('SET', KEYS[1], old, 'KEEPTTL')
  return {'taken', old, tonumber(ARGV[3])}
end
-- No lease key: given up, run out, or lost by Redis (evicted, flushed).
local now = server_ms()
local copy = on_own_key(KEYS[2], 'GET', KEYS[2])
if copy then
  local expiry = lease_expiry(copy)
  if not expiry or expiry <= now then
    return {'lost'}
  end
  if string.sub(copy, 1, #ARGV[1]) ~= ARGV[1] then
    return {'taken', copy, expiry - now}  -- another's lease, itself lost by Redis
  end
else
  -- The copy is gone too (allkeys-* eviction, FLUSHALL, a failover to a
  -- replica that missed our election). The lease is still ours unless it
  -- would have run out by now, or a newer term was started since (the term
  -- key has no TTL; if it is gone or older, nobody took one here: a term
  -- taken later is above ours by the clock floor). The term key is raised
  -- back to ours, so that terms never go back.
  local stored = tonumber(on_own_key(KEYS[3], 'GET', KEYS[3]))
  if tonumber(ARGV[5]) <= now or (stored and stored > tonumber(ARGV[4])) then
    return {'lost'}
  end
  if not stored or stored < tonumber(ARGV[4]) then
    redis.call('SET', KEYS[3], ARGV[4])
  end
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('SET', KEYS[2], ARGV[2])
if ARGV[7] == '1' then
  redis.call('DEL', KEYS[4])
end
return {'renewed', 'restored'}
