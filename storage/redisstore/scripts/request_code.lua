-- The resend cooldown, as cooldown.lua: while one runs, only its
-- microseconds left. It starts once the counters pass.
local u = redis.call('GET', KEYS[1])
if u then
	local left = tonumber(u) - tonumber(ARGV[1])
	if left > 0 then return {left} end
end
-- The counters: stop after the first past its limit.
local counts = {0}
local n = #KEYS - 4
if not count_hits(counts, 4, n, 3) then return counts end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
-- The message with its flow, and the events.
local a = 4 + 2 * n
put_message(KEYS[2], KEYS[3], KEYS[4], a)
append_events(a + 9)
return counts
