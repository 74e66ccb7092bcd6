//go:build unix

package redistest

import "syscall"

// Pause stops the server's process with SIGSTOP, for tests of a Redis that
// stalls (a long fork, a swapping host, a saturated CPU): connections stay
// open and the kernel still accepts new ones, but nothing is answered until
// Resume. A paused server is resumed before the test's cleanups stop it.
// Pause on a stopped server does nothing.
func (s *Server) Pause() {
	s.signal(syscall.SIGSTOP)
	// Resuming a running process is harmless, so each Pause may add one.
	s.tb.Cleanup(s.Resume)
}

// Resume continues a server stopped by Pause with SIGCONT; it then answers
// the commands that waited meanwhile. Resume on a running or stopped server
// does nothing.
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		_ = s.cmd.Process.Signal(sig)
	}
}
