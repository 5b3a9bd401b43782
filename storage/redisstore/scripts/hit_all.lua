local counts = {}
for i, key in ipairs(KEYS) do
  local n = redis.call('INCR', key)
  if n == 1 then redis.call('PEXPIRE', key, ARGV[2 * i]) end
  counts[i] = n
  if n > tonumber(ARGV[2 * i - 1]) then break end
end
return counts
