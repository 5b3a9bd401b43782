-- The resend cooldown, as cooldown.lua: while one runs, only its
-- microseconds left. It starts once the counters pass.
local u = redis.call('GET', KEYS[1])
if u then
	local left = tonumber(u) - tonumber(ARGV[1])
	if left > 0 then return {left} end
end
-- The counters, as hit_all.lua: stop after the first past its limit.
local counts = {0}
local n = #KEYS - 4
for i = 1, n do
	local c = redis.call('INCR', KEYS[4 + i])
	if c == 1 then redis.call('PEXPIRE', KEYS[4 + i], ARGV[3 + 2 * i]) end
	counts[i + 1] = c
	if c > tonumber(ARGV[2 + 2 * i]) then return counts end
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
-- The message with its flow, and the events.
local a = 4 + 2 * n
put_message(KEYS[2], KEYS[3], KEYS[4], a)
append_events(a + 9)
return counts
