-- The counters (ARGV[5] of them, after the code's two keys), as
-- hit_all.lua: stop after the first past its limit, and then leave the
-- code alone.
local n = tonumber(ARGV[5])
local counts = {0}
for i = 1, n do
  local key = KEYS[2 + i]
  local c = redis.call('INCR', key)
  if c == 1 then redis.call('PEXPIRE', key, ARGV[5 + 2 * i]) end
  counts[#counts + 1] = c
  if c > tonumber(ARGV[4 + 2 * i]) then return counts end
end
counts[1] = redeem(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
-- An accepted code with a session to start: put_session's keys follow
-- the counters, its arguments the limits.
if counts[1] == 1 and #KEYS > 2 + n then
  put_session(2 + n, 6 + 2 * n)
end
return counts
