-- KEYS[1]: an index of contacts (an email or a directory id, to the
-- contact's id). ARGV[1]: the prefix of the contacts' record keys.
-- Returns the record of the contact the index names, or nil when the
-- index or the record is missing. It names the record's key itself: a
-- single server or Sentinel only (on a Cluster, a script names its keys).
local id = redis.call('GET', KEYS[1])
if not id then return nil end
return redis.call('GET', ARGV[1] .. id)
