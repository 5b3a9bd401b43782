-- The counters (ARGV[7] of them, after the code's two keys): stop after
-- the first past its limit, and then leave the code alone.
local counts = {0}
if not count_hits(counts, 2, tonumber(ARGV[7]), 7) then return counts end
put_code(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6])
counts[1] = 1
return counts
