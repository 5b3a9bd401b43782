-- Shared by the scripts that store a new session (prepended to them,
-- after audit_lib.lua).
--
-- put_session stores the session whose keys follow KEYS[k] (the
-- workspace's session index, the contact's, the session itself, and the
-- flow it ends, if any) with the arguments from ARGV[a] (the expiry's
-- score, the session's id hash, the score below which index entries have
-- expired, the indexes' TTL in ms, the session's JSON and its TTL in ms),
-- then appends the sign-in's audit events that follow them.
local function put_session(k, a)
  for i = 1, 2 do
    local idx = KEYS[k + i]
    redis.call('ZADD', idx, ARGV[a], ARGV[a + 1])
    redis.call('ZREMRANGEBYSCORE', idx, '-inf', ARGV[a + 2])
    if redis.call('PTTL', idx) < tonumber(ARGV[a + 3]) then
      redis.call('PEXPIRE', idx, ARGV[a + 3])
    end
  end
  redis.call('SET', KEYS[k + 3], ARGV[a + 4], 'PX', ARGV[a + 5])
  if KEYS[k + 4] then redis.call('DEL', KEYS[k + 4]) end
  append_events(a + 6)
end
