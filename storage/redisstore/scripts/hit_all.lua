local counts = {}
count_hits(counts, 0, #KEYS, 0)
return counts
