-- Prepended to the scripts that write contacts in one step: while a large
-- import holds the workspace's contacts (its lock, or a committed plan not
-- yet applied) they write nothing and return {2}, and the caller waits.
if redis.call('EXISTS', ARGV[1] .. 'imp:lock', ARGV[1] .. 'imp:mark') > 0 then return {2} end
