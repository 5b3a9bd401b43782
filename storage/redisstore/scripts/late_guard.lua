-- Starts every script (see newScript). Its last argument is its caller's
-- deadline by Redis's clock, in unix milliseconds ("" for none): past it
-- the caller has given up (and answered "temporarily unavailable"), so the
-- script must not take effect. A call that waited in a frozen Redis runs
-- once Redis resumes; this refuses it then. The argument is removed, so
-- the script reads ARGV as its caller built it.
local pg_deadline = table.remove(ARGV)
if pg_deadline ~= '' then
  local pg_now = redis.call('TIME')
  if tonumber(pg_now[1]) * 1000 + math.floor(tonumber(pg_now[2]) / 1000) > tonumber(pg_deadline) then
    return redis.error_reply('PGLATE the caller gave up on this call before Redis ran it')
  end
end
