-- Shared helpers, prepended to every raftredis script (they cost no commands).
-- PUBLISH, defined before this, is 'PUBLISH', or 'SPUBLISH' in a Redis Cluster.
-- Lease value: "<term> <holder id> <expiry, server ms>".

-- The server's clock in milliseconds (one TIME call).
local function server_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Run a command on one of the kind's keys. If the key holds another type
-- (junk: raftredis writes only strings, a zset and a hash there), delete it
-- and run the command again: the keys under the prefix are raftredis' own.
-- Costs no extra command when all is well.
local function on_own_key(key, ...)
  local reply = redis.pcall(...)
  if type(reply) == 'table' and reply.err then
    if string.find(reply.err, 'WRONGTYPE', 1, true) then
      redis.call('DEL', key)
      return redis.call(...)
    end
    error(reply.err)
  end
  return reply
end

local function fmt_int(n)
  return string.format('%.0f', n)
end

-- With a secret the caller signs and publishes the notices itself (the secret
-- never reaches Redis, where MONITOR and SLOWLOG would show it): a last ARGV
-- of "notices:return" makes a script collect its notices instead of
-- publishing them, and reply {its reply, {channel, notice, ...}}.
local returns_notices = ARGV[#ARGV] == 'notices:return'
local announced = {}

local function announce(channel, body)
  if returns_notices then
    announced[#announced + 1] = channel
    announced[#announced + 1] = body
    return 0
  end
  return redis.call(PUBLISH, channel, body)
end

local function notice(channel, kind, id, term)
  local body = '{"v":1,"type":"' .. kind .. '","id":' .. cjson.encode(id)
  if term then
    body = body .. ',"term":' .. fmt_int(term)
  end
  return announce(channel, body .. '}')
end

-- The lease key has a TTL, so a Redis whose maxmemory-policy is volatile-* (or
-- allkeys-*) may evict it before it runs out, and FLUSHALL empties it. Every
-- script that writes the lease also writes its copy, under a key without a TTL
-- (which volatile-* eviction cannot take): while the copy says the lease has
-- not run out by the server's clock, the lease is held, key or no key.

-- Expiry (server ms) of a lease value, or nil if it is not one.
local function lease_expiry(value)
  return tonumber(string.match(value, '^%d+ %S+ (%d+)$'))
end

-- The lease in force: the lease key's value, or else its copy while the copy
-- has not run out (and then true: the lease key had vanished). false: vacant
-- (false, not nil, so that it can stand in a script's reply table).
local function held_lease(leader_key, copy_key)
  local current = on_own_key(leader_key, 'GET', leader_key)
  if current then
    return current, false
  end
  local copy = on_own_key(copy_key, 'GET', copy_key)
  local expiry = copy and lease_expiry(copy)
  if expiry and expiry > server_ms() then
    return copy, true
  end
  return false, false
end

-- Fast failover: how many connections listen on an instance's presence
-- channel (its presence connection does, while it runs). PUBSUB is 'PUBLISH' or
-- 'SPUBLISH' above; NUMSUB follows it.
local function listeners(channel)
  local command = PUBLISH == 'SPUBLISH' and 'SHARDNUMSUB' or 'NUMSUB'
  return tonumber(redis.call('PUBSUB', command, channel)[2])
end

-- Take the lease for `id` in a new term: the term key, the lease, its copy, and
-- the elected notice. The first write fails on a Redis out of memory: then
-- nothing is taken.
local function take_lease(leader_key, term_key, copy_key, id, known_term, ttl_ms, control)
  -- Terms are integers below 2^53 (exact in Lua's doubles), so the next term
  -- must be too. Anything else in the term key was not written by raftredis
  -- and is ignored.
  local function sane(n)
    if n == nil or n ~= n or n < 0 or n >= 2^53 - 1 then return 0 end
    return math.floor(n)
  end
  local now = server_ms()
  local stored = sane(tonumber(on_own_key(term_key, 'GET', term_key)))
  -- The server's clock in ms is a floor for every new term. Without it, a
  -- failover to a replica that missed the last election (or lost its data)
  -- could hand out a term already used, if the winner never read it. With it,
  -- a term taken later is larger, as long as the Redis servers' clocks agree to
  -- within the time between two elections (at least a lease).
  local term = math.max(stored, sane(tonumber(known_term)), now) + 1
  local value = fmt_int(term) .. ' ' .. id .. ' ' .. fmt_int(now + tonumber(ttl_ms))
  redis.call('SET', term_key, fmt_int(term))
  redis.call('SET', leader_key, value, 'PX', ttl_ms)
  redis.call('SET', copy_key, value)
  notice(control, 'elected', id, term)
  return value
end

-- Fast failover: register the lease `value` just taken (presence-term) if its
-- holder's presence connection was counted; else clear the registration. Only
-- a registered lease may be taken over (a holder without fast failover, or of
-- an earlier version, never is). Returns 1 if registered, else 0.
local function register_presence(presence_term_key, value, present)
  if present then
    redis.call('SET', presence_term_key, string.match(value, '^(%d+ %S+) '))
    return 1
  end
  redis.call('DEL', presence_term_key)
  return 0
end

-- Delete the lease (and its copy) if `owner` ("<term> <id> ") still holds it;
-- announce it.
local function resign_if_mine(leader_key, copy_key, owner, control, id, term)
  local mine = 0
  for _, key in ipairs({leader_key, copy_key}) do
    local value = on_own_key(key, 'GET', key)
    if value and string.sub(value, 1, #owner) == owner then
      redis.call('DEL', key)
      mine = 1
    end
  end
  if mine == 1 then
    notice(control, 'resigned', id, tonumber(term))
  end
  return mine
end

-- Remove up to `limit` members whose expiry has passed, with their records,
-- and announce each one as left.
local function prune(members_key, meta_key, control, now, limit)
  local expired = on_own_key(
    members_key, 'ZRANGEBYSCORE', members_key, '-inf', fmt_int(now), 'LIMIT', 0, limit)
  if #expired > 0 then
    redis.call('ZREM', members_key, unpack(expired))
    on_own_key(meta_key, 'HDEL', meta_key, unpack(expired))
    for _, id in ipairs(expired) do
      notice(control, 'left', id)
    end
  end
  return expired
end
