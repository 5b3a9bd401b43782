local list = {}
for i = 0, (#ARGV - 1) / 4 - 1 do
  list[#list + 1] = {ARGV[2 + 4*i], ARGV[3 + 4*i], ARGV[4 + 4*i], ARGV[5 + 4*i], i}
end
local out = {1}
local bad = put_contacts(ARGV[1], list, out)
if bad then return bad end
return out
