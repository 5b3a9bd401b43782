-- Stages chunks of a large import under its lock. KEYS: lock, plan, mark.
-- ARGV: token, lease (ms), commit ("1" to write the mark after these
-- chunks), then the chunks (JSON). Returns 1, or 0 when the lock is not
-- the caller's.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
for i = 4, #ARGV do redis.call('RPUSH', KEYS[2], ARGV[i]) end
if ARGV[3] == '1' then redis.call('SET', KEYS[3], '1') end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
