-- heartbeat: refresh our membership by the server's clock, write our record,
-- prune expired members, read the lease. Also the join step of start().
-- KEYS: 1 members, 2 meta, 3 leader
-- ARGV: 1 id, 2 member expiry ms, 3 member record (JSON), 4 control channel
-- Returns {server ms, added 0/1, lease value or nil}.
-- Safe to run twice (the second run only refreshes).
local now = server_ms()
local added = redis.call('ZADD', KEYS[1], fmt_int(now + tonumber(ARGV[2])), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
if added == 1 then
  redis.call('PUBLISH', ARGV[4],
    '{"v":1,"type":"joined","id":' .. cjson.encode(ARGV[1]) .. ',"record":' .. ARGV[3] .. '}')
end
prune(KEYS[1], KEYS[2], ARGV[4], now, 100)
return {now, added, redis.call('GET', KEYS[3])}
