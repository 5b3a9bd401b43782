local out = {}
end_sessions(ARGV[1], ARGV[2], out)
return out
