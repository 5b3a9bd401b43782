for i = 1, 2 do
  redis.call('ZADD', KEYS[i], ARGV[1], ARGV[2])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', ARGV[3])
  if redis.call('PTTL', KEYS[i]) < tonumber(ARGV[4]) then
    redis.call('PEXPIRE', KEYS[i], ARGV[4])
  end
end
redis.call('SET', KEYS[3], ARGV[5], 'PX', ARGV[6])
if KEYS[4] then redis.call('DEL', KEYS[4]) end
-- Then the sign-in's audit events, on a single server or Sentinel.
append_events(7)
return 1
