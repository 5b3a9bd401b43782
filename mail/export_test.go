package mail

// OneCommandAtATime makes s send command by command, as to a server
// without PIPELINING.
func OneCommandAtATime(s *SMTP) { s.oneCommandAtATime = true }

// DataNotChunks makes s send the content with DATA, as to a server
// without CHUNKING.
func DataNotChunks(s *SMTP) { s.dataNotChunks = true }
