local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(ids) do
  local k = ARGV[4] .. id
  local f = redis.call('HMGET', k, 'msg', 'due', 'err')
  if f[1] then
    local n = redis.call('HINCRBY', k, 'attempts', 1)
    redis.call('HSET', k, 'lease', ARGV[5])
    redis.call('ZADD', KEYS[1], ARGV[2], id)
    out[#out + 1] = {id, f[1], n, f[2] or '', f[3] or ''}
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return out
