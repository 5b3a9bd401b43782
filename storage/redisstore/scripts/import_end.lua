-- Ends a large import: drops its plan and mark (a finished one has none
-- left; one refused before its mark is rolled back) and its lock. KEYS:
-- lock, plan, mark. ARGV: token. Returns 1, or 0 when the lock is not the
-- caller's (nothing is touched then).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[2], KEYS[3], KEYS[1])
return 1
