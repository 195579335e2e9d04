-- leave: resign if we lead, then remove our membership and announce it.
-- KEYS: 1 leader, 2 members, 3 meta, 4 leader copy
-- ARGV: 1 owner prefix "<term> <id> " or "" when not leader, 2 control channel,
--       3 id, 4 term (or "")
-- Returns {resigned 0/1, removed 0/1}. Safe to run twice.
local resigned = 0
if ARGV[1] ~= '' then
  resigned = resign_if_mine(KEYS[1], KEYS[4], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
end
local removed = redis.call('ZREM', KEYS[2], ARGV[3])
redis.call('HDEL', KEYS[3], ARGV[3])
if removed == 1 then
  notice(ARGV[2], 'left', ARGV[3])
end
return {resigned, removed}
