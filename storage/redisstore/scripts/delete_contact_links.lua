-- KEYS: contact index, workspace index. ARGV: now (unix µs), key prefix
-- of the workspace's links ({ws:W}:l:). Returns how many live links went.
local ids = redis.call('ZRANGE', KEYS[1], 0, -1)
local n = 0
for _, id in ipairs(ids) do
  local k = ARGV[2] .. id
  local e = redis.call('HGET', k, 'e')
  if e then
    redis.call('DEL', k)
    if tonumber(e) > tonumber(ARGV[1]) then n = n + 1 end
  end
  redis.call('ZREM', KEYS[2], id)
end
redis.call('DEL', KEYS[1])
return n
