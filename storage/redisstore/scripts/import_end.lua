-- Releases a large import's lock. KEYS: lock. ARGV: token. The plan and
-- mark stay: a committed plan not yet applied (a step failed) is finished
-- by the next contact write, a staged one that was never committed is
-- dropped by the next importer. Returns 1, or 0 when the lock is not the
-- caller's (nothing is touched then).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
