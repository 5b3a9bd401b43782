-- Shared by the scripts that end a contact's sign-ins (prepended to them).
-- end_sessions deletes every session of contact id under the workspace key
-- prefix pre, with its index entries, and appends the id hash and JSON of
-- each deleted session to out; end_codes deletes every code of the contact.
local function end_sessions(pre, id, out)
  local si = pre .. 'si:' .. id
  for _, h in ipairs(redis.call('ZRANGE', si, 0, -1)) do
    local k = pre .. 'sess:' .. h
    local v = redis.call('GET', k)
    if v then
      redis.call('DEL', k)
      out[#out + 1] = h
      out[#out + 1] = v
    end
    redis.call('ZREM', pre .. 'sessions', h)
  end
  redis.call('DEL', si)
end
local function end_codes(pre, id)
  local cs = pre .. 'codes:' .. id
  for _, f in ipairs(redis.call('SMEMBERS', cs)) do
    redis.call('DEL', pre .. 'code:' .. id .. ':' .. f)
  end
  redis.call('DEL', cs)
end
