-- renew: extend the lease, only if we still hold it.
-- KEYS: 1 leader
-- ARGV: 1 owner prefix "<term> <id> ", 2 new value (same prefix, new expiry),
--       3 lease ttl ms
-- Returns {"renewed"}, {"lost"} (no lease) or {"taken", value, pttl ms}.
-- One SET ... XX GET does the common case in a single call (GET + PEXPIRE
-- would be two). When the lease is not ours the old value is put back, in the
-- same atomic script, so nobody ever sees ours; the holder's lease then ends
-- ttl from now, later than the holder itself believes: the safe direction.
-- Safe to run twice.
local old = on_own_key(KEYS[1], 'SET', KEYS[1], ARGV[2], 'XX', 'PX', ARGV[3], 'GET')
if not old then
  return {'lost'}
end
if string.sub(old, 1, #ARGV[1]) == ARGV[1] then
  return {'renewed'}
end
redis.call('SET', KEYS[1], old, 'KEEPTTL')
return {'taken', old, tonumber(ARGV[3])}
