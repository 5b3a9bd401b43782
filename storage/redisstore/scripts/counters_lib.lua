-- Shared by the scripts that count rate-limit counters (prepended to
-- them).
--
-- count_hits counts one event against each of the n counters from
-- KEYS[k + 1], whose limits and TTLs in ms are ARGV[a + 1], ARGV[a + 2],
-- and so on in turn, appending each count to counts. It stops after the
-- first counter past its limit, and says whether none was.
local function count_hits(counts, k, n, a)
  for i = 1, n do
    local key = KEYS[k + i]
    local c = redis.call('INCR', key)
    if c == 1 then redis.call('PEXPIRE', key, ARGV[a + 2 * i]) end
    counts[#counts + 1] = c
    if c > tonumber(ARGV[a + 2 * i - 1]) then return false end
  end
  return true
end
