-- Prepares an audit trail for an append (prepare_trail, in audit_lib.lua,
-- which comes first), KEYS: the trail. ARGV: the oldest score kept
-- (microseconds), the most expired events to remove, now (microseconds).
-- Returns the contacts whose expired events it removed, for the caller to
-- trim their indexes: a Cluster keeps a contact's index in another slot,
-- so there the caller writes after this returns (a single server appends
-- with append_audit.lua instead).
return prepare_trail(KEYS[1], ARGV[1], ARGV[2], ARGV[3])
