put_session(0, 1)
return 1
