-- One write command, as a script so that it is guarded like every other
-- (late_guard.lua): ARGV[1] names it (SET with PX, GETDEL or DEL), on
-- KEYS[1]; SET takes the value and the TTL in ms from ARGV[2] and ARGV[3].
local cmd = ARGV[1]
if cmd == 'SET' then
  return redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
elseif cmd == 'GETDEL' then
  return redis.call('GETDEL', KEYS[1])
elseif cmd == 'DEL' then
  return redis.call('DEL', KEYS[1])
end
return redis.error_reply('unknown command ' .. tostring(cmd))
