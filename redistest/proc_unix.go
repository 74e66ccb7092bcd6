//go:build unix

package redistest

import (
	"fmt"
	"os"
	"syscall"
)

var terminateSignal = syscall.SIGTERM

// pauseSignal and resumeSignal freeze and thaw a process (see Pause).
var pauseSignal, resumeSignal = syscall.SIGSTOP, syscall.SIGCONT

// lockFile takes an exclusive flock on path, waiting for it, and returns the
// function that releases it.
func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("flock %s: %w", path, err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		_ = f.Close()
	}, nil
}
