-- reliable_send: add one reliable message to a stream, if someone will read it.
-- KEYS: 1 stream, 2 members, 3 leader, 4 leader copy (see held_lease)
-- ARGV: 1 scope (direct, leader, all, followers), 2 target id (direct), 3 envelope,
--       4 sender id, 5 the writer's id prefix, 6 its number on this stream,
--       7 reply list key or "", 8 the request's deadline (server ms) or "0",
--       9 max length, 10 max age (ms), 11 "1": refuse when nobody leads
-- Returns {status, receivers, entry id}: status ok, gone (the target is no member),
-- unreliable (a member that reads no reliable messages), no-leader, self (the
-- target, or the leader, is the sender: nobody receives their own message).
local now = server_ms()
local scope = ARGV[1]

local function member(id)
  local score = redis.call('ZSCORE', KEYS[2], id)
  return score and tonumber(score) >= now
end

local receivers = 1
if scope == 'direct' then
  if ARGV[2] == ARGV[4] then
    return {'self', 0, false}
  end
  if not member(ARGV[2]) then
    return {'gone', 0, false}
  end
  if redis.call('EXISTS', KEYS[1]) == 0 then
    return {'unreliable', 0, false}
  end
elseif scope == 'leader' then
  local current = held_lease(KEYS[3], KEYS[4])
  if ARGV[11] == '1' and not current then
    return {'no-leader', 0, false}
  end
  if current and string.match(current, '^%d+ (%S+) %d+$') == ARGV[4] then
    return {'self', 0, false}
  end
  if redis.call('EXISTS', KEYS[1]) == 0 then
    -- Waits for the next leader even before any instance reads reliable messages.
    redis.call('XGROUP', 'CREATE', KEYS[1], 'leader', '0', 'MKSTREAM')
  end
else
  receivers = 0
  if redis.call('EXISTS', KEYS[1]) == 1 then
    for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
      local name = group[2]
      if name ~= ARGV[4] and member(name) then
        receivers = receivers + 1
      end
    end
  end
end

local fields = {'m', ARGV[3], 'p', ARGV[5], 'n', ARGV[6]}
if ARGV[7] ~= '' then
  fields[#fields + 1] = 'r'
  fields[#fields + 1] = ARGV[7]
  fields[#fields + 1] = 'd'
  fields[#fields + 1] = ARGV[8]
end
local entry = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[9], '*', unpack(fields))
redis.call('XTRIM', KEYS[1], 'MINID', '~', fmt_int(now - tonumber(ARGV[10])))
return {'ok', receivers, entry}
