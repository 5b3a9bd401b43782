-- KEYS: the ids set, the ids sorted set. ARGV: ids. Each id of the set is
-- put in the sorted set, each id that is not removed from it.
for _, id in ipairs(ARGV) do
  if redis.call('SISMEMBER', KEYS[1], id) == 1 then
    redis.call('ZADD', KEYS[2], 0, id)
  else
    redis.call('ZREM', KEYS[2], id)
  end
end
return 1
