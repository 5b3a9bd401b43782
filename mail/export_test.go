package mail

// OneCommandAtATime makes s send command by command, as to a server
// without PIPELINING.
func OneCommandAtATime(s *SMTP) { s.oneCommandAtATime = true }
