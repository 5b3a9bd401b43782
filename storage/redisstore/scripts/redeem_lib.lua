-- Shared by the scripts that redeem a code (prepended to them).
--
-- redeem compares hash with the code at key (the contact's set of codes
-- is set, its flow flow), at now (unix microseconds), with at most max
-- tries. Returns 1 accepted (the code is gone), 2 wrong (a try counted),
-- 3 dead (that was the last try: gone), 0 missing (none, expired or used
-- up: gone).
local function redeem(key, set, hash, now, max, flow)
  local c = redis.call('HMGET', key, 'h', 'e', 't')
  if not c[1] then return 0 end
  local function gone()
    redis.call('DEL', key)
    redis.call('SREM', set, flow)
  end
  local tries, most = tonumber(c[3]) or 0, tonumber(max)
  if tonumber(now) >= tonumber(c[2]) or tries >= most then
    gone()
    return 0
  end
  if c[1] == hash then
    gone()
    return 1
  end
  tries = tries + 1
  if tries >= most then
    gone()
    return 3
  end
  redis.call('HSET', key, 't', tries)
  return 2
end
