-- KEYS: link hash. ARGV: now (unix µs), now (RFC 3339).
-- Returns {doc, opens, last opened} for a live link, nil otherwise.
local v = redis.call('HMGET', KEYS[1], 'e', 'doc')
if not v[1] or tonumber(v[1]) <= tonumber(ARGV[1]) then return false end
local o = redis.call('HINCRBY', KEYS[1], 'o', 1)
redis.call('HSET', KEYS[1], 'l', ARGV[2])
return {v[2], o, ARGV[2]}
