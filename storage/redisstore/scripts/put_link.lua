-- KEYS: link hash, workspace index, contact index.
-- ARGV: link JSON, expiry (unix µs), TTL in ms, id, now (unix µs), contact id.
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'doc', ARGV[1], 'e', ARGV[2], 'c', ARGV[6], 'o', 0)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
for i = 2, 3 do
  redis.call('ZADD', KEYS[i], ARGV[2], ARGV[4])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', ARGV[5])
  if redis.call('PTTL', KEYS[i]) < tonumber(ARGV[3]) then
    redis.call('PEXPIRE', KEYS[i], ARGV[3])
  end
end
return 1
