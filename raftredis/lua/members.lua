-- members: prune, then list live members with their records, and the lease
-- (or its copy, see held_lease).
-- KEYS: 1 members, 2 meta, 3 leader, 4 leader copy
-- ARGV: 1 control channel
-- Returns {server ms, lease value or nil, {id, expiry ms, record or nil, ...}}.
-- O(members of this kind); HMGET in batches keeps unpack() within Lua's stack.
local now = server_ms()
prune(KEYS[1], KEYS[2], ARGV[1], now, 1000)
local live = on_own_key(KEYS[1], 'ZRANGEBYSCORE', KEYS[1], '(' .. fmt_int(now), '+inf', 'WITHSCORES')
local rows = {}
local batch_size = 1000
for first = 1, #live / 2, batch_size do
  local last = math.min(first + batch_size - 1, #live / 2)
  local ids = {}
  for i = first, last do
    ids[#ids + 1] = live[2 * i - 1]
  end
  local records = on_own_key(KEYS[2], 'HMGET', KEYS[2], unpack(ids))
  for j, id in ipairs(ids) do
    rows[#rows + 1] = id
    rows[#rows + 1] = live[2 * (first + j - 1)]
    rows[#rows + 1] = records[j]
  end
end
return {now, (held_lease(KEYS[3], KEYS[4])), rows}
