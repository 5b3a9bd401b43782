if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
redis.call('HSET', KEYS[2], 'due', ARGV[2], 'lease', '', 'err', ARGV[4])
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return 1
