-- The counters, as hit_all.lua: stop after the first past its limit,
-- and then leave the code alone.
local counts = {0}
for i = 3, #KEYS do
  local n = redis.call('INCR', KEYS[i])
  if n == 1 then redis.call('PEXPIRE', KEYS[i], ARGV[4 + 2 * (i - 2)]) end
  counts[#counts + 1] = n
  if n > tonumber(ARGV[3 + 2 * (i - 2)]) then return counts end
end
counts[1] = redeem(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
return counts
