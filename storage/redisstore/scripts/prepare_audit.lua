-- Prepares an audit trail for an append (prepare_trail, in audit_lib.lua,
-- which comes first), KEYS: the trail. ARGV: the oldest score kept
-- (microseconds), the most expired events to remove, now (microseconds).
-- Returns the contacts whose expired events it removed, for the caller to
-- trim their indexes. On a single server (or Sentinel) ARGV goes on with
-- the append itself (write_event): the member, its score, the ms the
-- trail and indexes are kept, the contacts' index prefix and the event's
-- contact ("" for none). A Cluster keeps a contact's index in another
-- slot, so there the caller writes after this returns.
local contacts = prepare_trail(KEYS[1], ARGV[1], ARGV[2], ARGV[3])
if ARGV[4] then
	write_event(KEYS[1], ARGV[1], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], contacts)
end
return contacts
