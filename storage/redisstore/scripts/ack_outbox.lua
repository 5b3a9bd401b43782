redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[1], ARGV[1])
-- Then the delivery's audit events, on a single server or Sentinel.
append_events(2)
return 1
