package session

// Run serves the connection as Start does and returns when the session has
// finished: the blocking form the package's tests drive a session with
// (the server starts sessions with a completion callback instead).
func (s *Session) Run() {
	done := make(chan struct{})
	s.Start(func() { close(done) })
	<-done
}
