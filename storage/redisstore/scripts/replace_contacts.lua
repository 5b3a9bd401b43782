local pre, origin, source, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
-- holds says whether a stored contact belongs to the set replaced.
local function holds(d)
  if origin ~= '' then return d.origin == origin end
  return d.source == source
end
-- fields compares two contacts, ignoring when they were written.
local fields = {'id', 'email', 'name', 'status', 'source', 'directory_id', 'origin'}
local function same(a, b)
  for _, f in ipairs(fields) do
    if (a[f] or '') ~= (b[f] or '') then return false end
  end
  return true
end
local list, seen, unchanged = {}, {}, 0
for i = 0, (#ARGV - 4) / 4 - 1 do
  local id, doc = ARGV[5 + 4*i], ARGV[8 + 4*i]
  seen[id] = true
  local raw = redis.call('GET', pre .. 'c:' .. id)
  if raw and same(cjson.decode(raw), cjson.decode(doc)) then
    unchanged = unchanged + 1
  else
    list[#list + 1] = {id, ARGV[6 + 4*i], ARGV[7 + 4*i], doc, i}
  end
end
local out = {1, #list, 0, unchanged}
local bad = put_contacts(pre, list, out)
if bad then return bad end
local disabled = 0
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if not seen[id] then
    local raw = redis.call('GET', pre .. 'c:' .. id)
    if raw then
      local d = cjson.decode(raw)
      if holds(d) and d.status == 'active' then
        d.status = 'disabled'
        d.updated_at = now
        redis.call('SET', pre .. 'c:' .. id, cjson.encode(d))
        end_sessions(pre, id, out)
        end_codes(pre, id)
        disabled = disabled + 1
      end
    end
  end
end
out[3] = disabled
return out
