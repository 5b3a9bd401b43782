-- Shared by the scripts that queue a message (prepended to them).
--
-- put_message stores a message under msg and schedules it in the due set,
-- and, when flow is given, the sign-in flow that asked for it. Its values
-- are in ARGV from a: id, message JSON, attempts, due, lease until, last
-- error, score (unix microseconds when claimable), then the flow's JSON
-- and TTL in ms.
local function put_message(due, msg, flow, a)
	if flow then redis.call('SET', flow, ARGV[a + 7], 'PX', ARGV[a + 8]) end
	redis.call('DEL', msg)
	redis.call('HSET', msg, 'msg', ARGV[a + 1], 'attempts', ARGV[a + 2], 'due', ARGV[a + 3], 'lease', ARGV[a + 4], 'err', ARGV[a + 5])
	redis.call('ZADD', due, ARGV[a + 6], ARGV[a])
end
