-- resign: give up the lease, only if we still hold it, and announce it.
-- KEYS: 1 leader, 2 leader copy
-- ARGV: 1 owner prefix "<term> <id> ", 2 control channel, 3 id, 4 term
-- Returns 1 if resigned, 0 if the lease was not ours. Safe to run twice.
return resign_if_mine(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
