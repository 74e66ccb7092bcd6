//go:build unix

package materializer

import (
	"os"
	"syscall"
)

// tryLock takes an exclusive advisory lock (flock) on f without waiting,
// and fails when another open file holds one.
func tryLock(f *os.File) error {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
}
