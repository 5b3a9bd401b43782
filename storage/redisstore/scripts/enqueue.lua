if KEYS[3] then redis.call('SET', KEYS[3], ARGV[8], 'PX', ARGV[9]) end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], 'msg', ARGV[2], 'attempts', ARGV[3], 'due', ARGV[4], 'lease', ARGV[5], 'err', ARGV[6])
redis.call('ZADD', KEYS[1], ARGV[7], ARGV[1])
-- Then the audit events of the request, on a single server or Sentinel.
if KEYS[3] then append_events(10) else append_events(8) end
return 1
