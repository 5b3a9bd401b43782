-- The counters (ARGV[5] of them, after the code's two keys): stop after
-- the first past its limit, and then leave the code alone.
local n = tonumber(ARGV[5])
local counts = {0}
if not count_hits(counts, 2, n, 5) then return counts end
counts[1] = redeem(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
-- An accepted code with a session to start: put_session's keys follow
-- the counters, its arguments the limits.
if counts[1] == 1 and #KEYS > 2 + n then
  put_session(2 + n, 6 + 2 * n)
end
return counts
