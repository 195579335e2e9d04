-- reliable_prune: remove what departed reliable readers left behind (run by the leader).
-- KEYS: 1 reliable index (hash: id -> "<joined ms>", then " gone <ms>" once seen gone),
--       2 members, 3 the stream for all
-- ARGV: 1 the prefix of the instances' streams, 2 grace (ms), 3 most removed per run
-- An indexed id that is no member is marked gone (since its expiry, or now if it
-- was pruned from the members already); one marked gone at least grace ago loses
-- its stream, its group on the stream for all and its index entry. A member again
-- (its membership lapsed and came back) loses its mark. The streams are named from
-- ARGV[1], not KEYS: they share the kind's hash tag, so they are on this slot.
-- Returns {id, messages dropped, ...}: its stream's length, plus what its group
-- had read and not acked or not read yet on the stream for all (the latter only
-- where XINFO GROUPS reports a lag, Redis 7.0 on).
local now = server_ms()
local grace = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local index = on_own_key(KEYS[1], 'HGETALL', KEYS[1])

local broadcast = nil -- the groups on the stream for all, read once if needed
local function held_for_all(id)
  if broadcast == nil then
    broadcast = {}
    local groups = redis.pcall('XINFO', 'GROUPS', KEYS[3])
    if not groups.err then
      for _, flat in ipairs(groups) do
        local info = {}
        for i = 1, #flat - 1, 2 do
          info[flat[i]] = flat[i + 1]
        end
        broadcast[info['name']] = (tonumber(info['pending']) or 0) + (tonumber(info['lag']) or 0)
      end
    end
  end
  return broadcast[id] or 0
end

local dropped = {}
for i = 1, #index - 1, 2 do
  local id, value = index[i], index[i + 1]
  local joined, gone = string.match(value, '^(.-) gone (%d+)$')
  local score = tonumber(on_own_key(KEYS[2], 'ZSCORE', KEYS[2], id))
  if score and score >= now then
    if gone then
      redis.call('HSET', KEYS[1], id, joined)
    end
  elseif not gone then
    local since = score or now
    redis.call('HSET', KEYS[1], id, value .. ' gone ' .. fmt_int(since))
  elseif now - tonumber(gone) >= grace and #dropped < 2 * limit then
    local stream = ARGV[1] .. id
    local length = redis.pcall('XLEN', stream)
    local count = (type(length) == 'number' and length or 0) + held_for_all(id)
    redis.call('DEL', stream)
    redis.pcall('XGROUP', 'DESTROY', KEYS[3], id)
    redis.call('HDEL', KEYS[1], id)
    dropped[#dropped + 1] = id
    dropped[#dropped + 1] = count
  end
end
return dropped
