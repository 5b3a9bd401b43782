-- Shared by the scripts that append audit events (prepended to them).
--
-- prepare_trail readies trail for an append: the member "!indexed", scored
-- by when the trail began to have contact indexes, tells readers which
-- events the indexes hold (a new trail has them from the start, score 0;
-- an older one from now on). Then it removes at most trim of the oldest
-- events, those scored before oldest, and returns the contacts they
-- concerned. A member is a 26-character id and the event's JSON; an id
-- that JSON escapes is not matched (its index trims itself at the
-- contact's next event, and expires).
local function prepare_trail(trail, oldest, trim, now)
	if not redis.call('ZSCORE', trail, '!indexed') then
		local since = now
		if redis.call('EXISTS', trail) == 0 then
			since = '0'
		end
		redis.call('ZADD', trail, since, '!indexed')
	end
	local old = redis.call('ZRANGE', trail, '-inf', '(' .. oldest, 'BYSCORE', 'LIMIT', 0, tonumber(trim) + 1)
	local gone, contacts, seen = {}, {}, {}
	for _, m in ipairs(old) do
		if m ~= '!indexed' and #gone < tonumber(trim) then
			gone[#gone + 1] = m
			local c = string.match(m, '"contact_id":"([^"\\]*)"', 27)
			if c and not seen[c] then
				seen[c] = true
				contacts[#contacts + 1] = c
			end
		end
	end
	if #gone > 0 then
		redis.call('ZREM', trail, unpack(gone))
	end
	return contacts
end

-- write_event appends member at score to trail and, with a contact, to
-- that contact's index (cprefix .. contact), keeping both keep ms, and
-- trims the indexes of the contacts whose events prepare_trail removed.
-- It names the index keys itself: a single server or Sentinel only (a
-- Cluster keeps them in other slots).
local function write_event(trail, oldest, member, score, keep, cprefix, contact, trimmed)
	redis.call('ZADD', trail, score, member)
	redis.call('PEXPIRE', trail, keep)
	if contact ~= '' then
		local ck = cprefix .. contact
		redis.call('ZADD', ck, score, member)
		redis.call('ZREMRANGEBYSCORE', ck, '-inf', '(' .. oldest)
		redis.call('PEXPIRE', ck, keep)
	end
	for _, c in ipairs(trimmed) do
		redis.call('ZREMRANGEBYSCORE', cprefix .. c, '-inf', '(' .. oldest)
	end
end

-- append_events appends the events given in ARGV from index first: their
-- number, then per event the trail, the oldest score kept, the most
-- expired events to remove, now, the member, its score, the ms to keep,
-- the contacts' index prefix and the contact ("" for none). Nothing when
-- ARGV ends before first. Single server or Sentinel only.
local function append_events(first)
	local n = tonumber(ARGV[first] or '0')
	for i = 0, n - 1 do
		local a = first + 1 + 9 * i
		local trimmed = prepare_trail(ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3])
		write_event(ARGV[a], ARGV[a + 1], ARGV[a + 4], ARGV[a + 5], ARGV[a + 6], ARGV[a + 7], ARGV[a + 8], trimmed)
	end
end
