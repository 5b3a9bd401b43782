local tries = ARGV[3]
local old = redis.call('HMGET', KEYS[1], 'h', 't')
if old[1] == ARGV[1] and (tonumber(old[2]) or 0) > tonumber(tries) then tries = old[2] end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'h', ARGV[1], 'e', ARGV[2], 't', tries, 'i', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('SADD', KEYS[2], ARGV[6])
if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[5]) then
  redis.call('PEXPIRE', KEYS[2], ARGV[5])
end
return 1
