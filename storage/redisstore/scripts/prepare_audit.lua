-- Prepares an audit trail for an append, KEYS: the trail. ARGV: the oldest
-- score kept (microseconds), the most expired events to remove, now
-- (microseconds); on a single server (or Sentinel) also the append itself:
-- the member, its score, the milliseconds the trail and indexes are kept,
-- the prefix of the contacts' index keys and the event's contact ("" for
-- none). A Cluster keeps a contact's index in another slot, so there the
-- caller writes after this returns.
--
-- The member "!indexed", scored by when the trail began to have contact
-- indexes, tells readers which events the indexes hold: a new trail has
-- them from the start (score 0), an older one from now on.
if not redis.call('ZSCORE', KEYS[1], '!indexed') then
	local since = ARGV[3]
	if redis.call('EXISTS', KEYS[1]) == 0 then
		since = '0'
	end
	redis.call('ZADD', KEYS[1], since, '!indexed')
end
-- Then it removes at most ARGV[2] of the oldest events, those scored
-- before ARGV[1], and returns the contacts they concerned, for the caller
-- to trim those contacts' indexes too. A member is a 26-character id and
-- the event's JSON; an id that JSON escapes is not matched (its index
-- trims itself at the contact's next event, and expires).
local old = redis.call('ZRANGE', KEYS[1], '-inf', '(' .. ARGV[1], 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[2]) + 1)
local gone, contacts, seen = {}, {}, {}
for _, m in ipairs(old) do
	if m ~= '!indexed' and #gone < tonumber(ARGV[2]) then
		gone[#gone + 1] = m
		local c = string.match(m, '"contact_id":"([^"\\]*)"', 27)
		if c and not seen[c] then
			seen[c] = true
			contacts[#contacts + 1] = c
		end
	end
end
if #gone > 0 then
	redis.call('ZREM', KEYS[1], unpack(gone))
end
if ARGV[4] then
	redis.call('ZADD', KEYS[1], ARGV[5], ARGV[4])
	redis.call('PEXPIRE', KEYS[1], ARGV[6])
	if ARGV[8] ~= '' then
		local ck = ARGV[7] .. ARGV[8]
		redis.call('ZADD', ck, ARGV[5], ARGV[4])
		redis.call('ZREMRANGEBYSCORE', ck, '-inf', '(' .. ARGV[1])
		redis.call('PEXPIRE', ck, ARGV[6])
	end
	for _, c in ipairs(contacts) do
		redis.call('ZREMRANGEBYSCORE', ARGV[7] .. c, '-inf', '(' .. ARGV[1])
	end
end
return contacts
