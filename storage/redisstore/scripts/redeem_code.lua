local c = redis.call('HMGET', KEYS[1], 'h', 'e', 't')
if not c[1] then return 0 end
local function gone()
  redis.call('DEL', KEYS[1])
  redis.call('SREM', KEYS[2], ARGV[4])
end
local tries, max = tonumber(c[3]) or 0, tonumber(ARGV[3])
if tonumber(ARGV[2]) >= tonumber(c[2]) or tries >= max then
  gone()
  return 0
end
if c[1] == ARGV[1] then
  gone()
  return 1
end
tries = tries + 1
if tries >= max then
  gone()
  return 3
end
redis.call('HSET', KEYS[1], 't', tries)
return 2
