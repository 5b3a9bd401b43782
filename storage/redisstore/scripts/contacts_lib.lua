-- Shared by the contact scripts (prepended to them).
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
-- put_contacts upserts the contacts of list ({id, email, directory id,
-- JSON, index} each) under pre: first it checks that every new email is
-- free (or the contact's own), then writes, so a conflict changes nothing;
-- it returns {0, index, id of the email's owner} then. A contact written
-- as disabled, or whose email changes, loses its sessions and codes, and
-- their id hashes and JSON are appended to out. Returns nil on success.
local function put_contacts(pre, list, out)
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
  for _, e in ipairs(list) do
    local id, email, dir = e[1], e[2], e[3]
    local old = current(id)
    if old then owner[old[1]] = false end
    local o = owner[email]
    if o == nil then o = redis.call('GET', pre .. 'ce:' .. email) end
    if o and o ~= id then return {0, e[5], o} end
    owner[email] = id
    cur[id] = {email, dir}
  end
  for _, e in ipairs(list) do
    local id, email, dir, doc = e[1], e[2], e[3], e[4]
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
    redis.call('ZADD', pre .. 'idz', 0, id)
  end
  return nil
end
