-- takeover: fast failover. Take the lease of a holder whose presence
-- connection has been gone for a whole window, by the server's clock.
-- KEYS: 1 leader, 2 term, 3 leader copy, 4 takeover suspicion, 5 the term whose
--       holder proves its presence
-- ARGV: 1 candidate id, 2 highest term the candidate has seen, 3 lease ttl ms,
--       4 control channel, 5 presence channel prefix ("<prefix>:{<kind>}:presence:"),
--       6 window ms
-- Returns one of
--   {"vacant"}                          no lease: campaign as usual (acquire);
--   {"held", value, pttl ms}            held by us, or the holder is present;
--   {"suspect", value, ms left}         the holder's presence is gone: the
--                                       suspicion is recorded (or was), and the
--                                       lease may be taken once ms left are over,
--                                       if the holder is still not back;
--   {"acquired", value, ttl ms, present} taken (present as in acquire).
-- The suspicion is "<term> <holder> <server ms when first seen gone>": it is
-- dropped as soon as the holder is seen present, by a holder's renew after it
-- subscribed again, and by any new lease. Safe to run twice.
local current = held_lease(KEYS[1], KEYS[3])
if not current then
  return {'vacant'}
end
local term, holder, expiry = string.match(current, '^(%d+) (%S+) (%d+)$')
if not term then
  return {'vacant'}  -- not a lease raftredis wrote: acquire replaces it
end
local now = server_ms()
local left = math.max(0, tonumber(expiry) - now)
local proves = on_own_key(KEYS[5], 'GET', KEYS[5]) == term .. ' ' .. holder
if holder == ARGV[1] or not proves or listeners(ARGV[5] .. holder) > 0 then
  -- Ours; or a holder that does not prove its presence (no fast failover: its
  -- lease runs out as usual); or one that is present.
  local suspect = on_own_key(KEYS[4], 'GET', KEYS[4])
  if suspect then
    redis.call('DEL', KEYS[4])
  end
  return {'held', current, left}
end
local owner = term .. ' ' .. holder .. ' '
local suspect = on_own_key(KEYS[4], 'GET', KEYS[4])
local since = suspect and string.sub(suspect, 1, #owner) == owner
  and tonumber(string.sub(suspect, #owner + 1))
local window = tonumber(ARGV[6])
if not since then
  redis.call('SET', KEYS[4], owner .. fmt_int(now), 'PX', fmt_int(10 * window))
  return {'suspect', current, window}
end
if now - since < window then
  return {'suspect', current, window - (now - since)}
end
-- Gone for the whole window, and still gone: its holder stopped calling itself
-- leader before this (see docs/design-notes.md, fast failover).
redis.call('DEL', KEYS[4])
local value = take_lease(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
local present = register_presence(KEYS[5], value, listeners(ARGV[5] .. ARGV[1]) > 0)
return {'acquired', value, tonumber(ARGV[3]), present}
