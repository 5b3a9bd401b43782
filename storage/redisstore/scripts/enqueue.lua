put_message(KEYS[1], KEYS[2], KEYS[3], 1)
-- Then the audit events of the request, on a single server or Sentinel.
if KEYS[3] then append_events(10) else append_events(8) end
return 1
