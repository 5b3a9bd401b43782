local u = redis.call('GET', KEYS[1])
if u then
  local left = tonumber(u) - tonumber(ARGV[1])
  if left > 0 then return left end
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 0
