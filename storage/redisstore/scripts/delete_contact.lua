local raw = redis.call('GET', KEYS[1])
if not raw then return {0} end
local d = cjson.decode(raw)
local out = {1}
end_sessions(ARGV[1], ARGV[2], out)
end_codes(ARGV[1], ARGV[2])
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[2])
redis.call('ZREM', ARGV[1] .. 'idz', ARGV[2])
local ek = ARGV[1] .. 'ce:' .. (d.email or '')
if redis.call('GET', ek) == ARGV[2] then redis.call('DEL', ek) end
if d.directory_id and d.directory_id ~= '' then
  local dk = ARGV[1] .. 'cd:' .. d.directory_id
  if redis.call('GET', dk) == ARGV[2] then redis.call('DEL', dk) end
end
return out
