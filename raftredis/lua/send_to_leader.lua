-- send_to_leader: read the lease holder and publish to its inbox in one step,
-- so a message never goes to the inbox of a leader that has just changed.
-- KEYS: 1 leader, 2 leader copy (see held_lease)
-- ARGV: 1 inbox channel prefix ("<prefix>:{<kind>}:to:"), 2 envelope, 3 sender id
-- Returns {leader id or nil, receivers}. Never retried (PUBLISH is at most once).
local current = held_lease(KEYS[1], KEYS[2])
local id = current and string.match(current, '^%d+ (%S+) %d+$')
if not id then
  return {false, 0}
end
if id == ARGV[3] then
  return {id, 0}
end
return {id, redis.call(PUBLISH, ARGV[1] .. id, ARGV[2])}
