-- KEYS: link hash, workspace index. ARGV: now (unix µs), id, key prefix of
-- the workspace ({ws:W}:). Returns 1 when a live link was revoked.
local v = redis.call('HMGET', KEYS[1], 'e', 'c')
if not v[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZREM', ARGV[3] .. 'li:' .. v[2], ARGV[2])
if tonumber(v[1]) <= tonumber(ARGV[1]) then return 0 end
return 1
