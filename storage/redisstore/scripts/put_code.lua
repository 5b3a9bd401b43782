redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'h', ARGV[1], 'e', ARGV[2], 't', ARGV[3], 'i', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
