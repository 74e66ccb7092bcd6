//go:build unix

package materializer

import (
	"errors"
	"io/fs"
	"os"
	"syscall"
)

// syncDir writes the entries of the folder dir to disk (fsync), so that a
// file renamed into it is there under its new name after a crash. It
// returns nil where the system does not allow it: a folder that can be
// written to but not opened (no read permission), or a file system that
// does not sync folders (EINVAL, ENOTSUP), where the rename is as durable as
// it gets.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if errors.Is(err, fs.ErrPermission) {
		return nil
	}
	if err != nil {
		return err
	}
	err = d.Sync()
	if errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOTSUP) || errors.Is(err, syscall.EOPNOTSUPP) {
		err = nil
	}
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
