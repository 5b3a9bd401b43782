-- KEYS[1]: a sign-in flow. ARGV[1]: the key prefix. Returns {the flow's
-- JSON, then the record of the contact it is for, when there is one}, or
-- nil without the flow: the contact its contact_id names, or else the
-- one its email names (as stored: the caller checks it is normalized).
-- It names the contact's keys itself: a single server or Sentinel only
-- (on a Cluster, a script names its keys, and they are in other slots).
local raw = redis.call('GET', KEYS[1])
if not raw then return nil end
local ok, f = pcall(cjson.decode, raw)
if not ok or type(f) ~= 'table' or type(f.workspace) ~= 'string' then return {raw} end
local ws = ARGV[1] .. '{ws:' .. f.workspace .. '}:'
local id = f.contact_id
if type(id) ~= 'string' or id == '' then
  if type(f.email) ~= 'string' or f.email == '' then return {raw} end
  id = redis.call('GET', ws .. 'ce:' .. f.email)
  if not id then return {raw} end
end
local c = redis.call('GET', ws .. 'c:' .. id)
if not c then return {raw} end
return {raw, c}
