local pre = ARGV[1]
local n = (#ARGV - 1) / 4
local cur, owner = {}, {}
local function current(id)
  local c = cur[id]
  if c == nil then
    local raw = redis.call('GET', pre .. 'c:' .. id)
    c = false
    if raw then
      local d = cjson.decode(raw)
      c = {d.email or '', d.directory_id or ''}
    end
    cur[id] = c
  end
  return c
end
for i = 0, n - 1 do
  local id, email, dir = ARGV[2 + 4*i], ARGV[3 + 4*i], ARGV[4 + 4*i]
  local old = current(id)
  if old then owner[old[1]] = false end
  local o = owner[email]
  if o == nil then o = redis.call('GET', pre .. 'ce:' .. email) end
  if o and o ~= id then return {0, i, o} end
  owner[email] = id
  cur[id] = {email, dir}
end
local out = {1}
for i = 0, n - 1 do
  local id, email, dir, doc = ARGV[2 + 4*i], ARGV[3 + 4*i], ARGV[4 + 4*i], ARGV[5 + 4*i]
  local raw = redis.call('GET', pre .. 'c:' .. id)
  if cjson.decode(doc).status ~= 'active' then
    end_sessions(pre, id, out)
    end_codes(pre, id)
  end
  if raw then
    local d = cjson.decode(raw)
    if d.email ~= email then
      end_sessions(pre, id, out)
      end_codes(pre, id)
    end
    redis.call('DEL', pre .. 'ce:' .. d.email)
    if d.directory_id and d.directory_id ~= '' then
      redis.call('DEL', pre .. 'cd:' .. d.directory_id)
    end
  end
  redis.call('SET', pre .. 'c:' .. id, doc)
  redis.call('SET', pre .. 'ce:' .. email, id)
  if dir ~= '' then redis.call('SET', pre .. 'cd:' .. dir, id) end
  redis.call('SADD', pre .. 'ids', id)
end
return out
