-- KEYS: the ids set, the ids sorted set. ARGV: the workspace's key prefix,
-- the lowest id (a ZRANGE BYLEX bound: '-' or '(' .. id), how many.
if redis.call('ZCARD', KEYS[2]) ~= redis.call('SCARD', KEYS[1]) then return {0} end
local ids = redis.call('ZRANGE', KEYS[2], ARGV[2], '+', 'BYLEX', 'LIMIT', 0, tonumber(ARGV[3]))
local out = {1}
for _, id in ipairs(ids) do
  local doc = redis.call('GET', ARGV[1] .. 'c:' .. id)
  if not doc then return {0} end
  out[#out + 1] = doc
end
return out
