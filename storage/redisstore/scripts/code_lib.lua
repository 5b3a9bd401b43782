-- Shared by the scripts that store a code (prepended to them).
--
-- put_code stores a code's hash, expiry (unix microseconds) and tries in
-- the hash at code, keeping the tries it had when the hash is the same
-- (a redelivery), with the time it was issued, for ttl ms, and lists the
-- flow in the contact's code set at set.
local function put_code(code, set, hash, expires, tries, issued, ttl, flow)
  local old = redis.call('HMGET', code, 'h', 't')
  if old[1] == hash and (tonumber(old[2]) or 0) > tonumber(tries) then tries = old[2] end
  redis.call('DEL', code)
  redis.call('HSET', code, 'h', hash, 'e', expires, 't', tries, 'i', issued)
  redis.call('PEXPIRE', code, ttl)
  redis.call('SADD', set, flow)
  if redis.call('PTTL', set) < tonumber(ttl) then
    redis.call('PEXPIRE', set, ttl)
  end
end
