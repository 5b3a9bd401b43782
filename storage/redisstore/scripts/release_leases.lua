-- A leased message is scored by its lease's end, after now, and has a
-- lease field; a message retried for later has an empty one.
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf')
local n = 0
for _, id in ipairs(ids) do
  local k = ARGV[2] .. id
  local lease = redis.call('HGET', k, 'lease')
  if lease and lease ~= '' then
    redis.call('HSET', k, 'lease', '')
    redis.call('ZADD', KEYS[1], ARGV[1], id)
    n = n + 1
  end
end
return n
