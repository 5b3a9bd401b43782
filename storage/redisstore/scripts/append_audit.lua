append_events(1)
return 1
