-- heartbeat: refresh our membership by the server's clock, write our record,
-- prune expired members, read the lease (or its copy, see held_lease). Also
-- the join step of start().
-- KEYS: 1 members, 2 meta, 3 leader, 4 leader copy
-- ARGV: 1 id, 2 member expiry ms, 3 member record (JSON), 4 control channel
--       (left notices of pruned members), 5 mode: "join" (refuse if a live
--       member has our id), "announce" (publish joined even if present), or ""
--       (routine), 6 membership channel (joined notices)
-- Returns {server ms, added (1, 0, or -1: refused, the id is taken), lease value
-- or false, live members}.
-- Safe to run twice (the second run only refreshes).
local now = server_ms()
if ARGV[5] == 'join' then
  local score = tonumber(on_own_key(KEYS[1], 'ZSCORE', KEYS[1], ARGV[1]))
  -- Our own record (it holds our join time, to the ms) means this is a retry of
  -- our own join after a lost reply, not another instance with our id.
  if score and score > now and on_own_key(KEYS[2], 'HGET', KEYS[2], ARGV[1]) ~= ARGV[3] then
    return {now, -1, (held_lease(KEYS[3], KEYS[4]))}
  end
end
local added = on_own_key(KEYS[1], 'ZADD', KEYS[1], fmt_int(now + tonumber(ARGV[2])), ARGV[1])
on_own_key(KEYS[2], 'HSET', KEYS[2], ARGV[1], ARGV[3])
if added == 1 or ARGV[5] == 'announce' then
  announce(ARGV[6],
    '{"v":1,"type":"joined","id":' .. cjson.encode(ARGV[1]) .. ',"record":' .. ARGV[3] .. '}')
end
prune(KEYS[1], KEYS[2], ARGV[4], now, 100)
return {now, added, (held_lease(KEYS[3], KEYS[4])), redis.call('ZCARD', KEYS[1])}
