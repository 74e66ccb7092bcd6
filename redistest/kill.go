package redistest

import "os"

// Kill kills the server's process with SIGKILL, as a crash or an
// out-of-memory kill would: it gets no chance to close its connections
// cleanly or to tell its replicas, and its clients see their connections
// reset. Kill returns once the process has exited; Restart starts it again
// on the same address. Kill on a stopped server does nothing.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(os.Kill)
	<-s.exited
	s.cmd, s.exited = nil, nil
}

// Running reports whether the server's process runs: false after Stop or
// Kill, until Restart.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}
