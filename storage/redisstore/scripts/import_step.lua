-- Applies the next chunk of a committed import and drops it from the
-- plan, in one script. KEYS: lock, plan, mark. ARGV: workspace key prefix,
-- token, lease (ms). Returns {1, chunks left, then id hash and JSON of
-- each ended session}; {1, -1} when the plan is empty (the mark is then
-- deleted); {2} when the lock is not the caller's; put_contacts' conflict
-- {0, index, owner} when the chunk no longer fits (nothing of it written).
if redis.call('GET', KEYS[1]) ~= ARGV[2] then return {2} end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
local raw = redis.call('LINDEX', KEYS[2], 0)
if not raw then
  redis.call('DEL', KEYS[3])
  return {1, -1}
end
local list = {}
for i, e in ipairs(cjson.decode(raw)) do
  list[i] = {e[1], e[2], e[3], e[4], i - 1}
end
local out = {1, 0}
local bad = put_contacts(ARGV[1], list, out)
if bad then return bad end
redis.call('LPOP', KEYS[2])
out[2] = redis.call('LLEN', KEYS[2])
return out
