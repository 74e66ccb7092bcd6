package materializer

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
)

// createOutputTemp creates the temporary file that the output at path is
// written to before it is renamed over path: in the same folder, named
// ".NAME.NNN.tmp" (a name starting with "." is left out when a folder is
// read as a source or an input, should the process die before removing
// it), with the permissions the umask leaves of 0666, as any file larder
// writes. The file is locked (flock) while it is open, so that another
// process writing the same output tells it from one a killed process left.
// It also returns the temporary files of the same output that are there
// already: see removeStaleTemps.
func createOutputTemp(path string) (*os.File, []string, error) {
	dir, prefix := filepath.Dir(path), "."+filepath.Base(path)+"."
	var stale []string
	if found, err := filepath.Glob(filepath.Join(dir, globQuote(prefix)+"*.tmp")); err == nil {
		for _, name := range found {
			if fi, err := os.Lstat(name); err == nil && fi.Mode().IsRegular() {
				stale = append(stale, name)
			}
		}
	}
	for range 100 {
		name := filepath.Join(dir, prefix+strconv.FormatUint(uint64(rand.Uint32()), 10)+".tmp")
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o666)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		// Best effort: on a file system without locks (some FUSE mounts)
		// the output is written all the same, and removeStaleTemps,
		// unable to lock either, removes nothing there.
		_ = tryLock(f)
		return f, stale, nil
	}
	return nil, nil, &fs.PathError{Op: "create", Path: filepath.Join(dir, prefix+"*.tmp"), Err: fs.ErrExist}
}

// commitOutputTemp makes f, the complete temporary file of the output at
// path (see createOutputTemp), the output: it writes f's data to disk
// (fsync), renames f over path, writes the folder's entries to disk where
// the system allows it (see syncDir), then closes f and removes the stale
// temporary files. A crash at any point leaves the output as it was or
// complete, never empty or partial under its name, on file systems that
// would otherwise write the rename before the data (ext4 without
// auto_da_alloc, XFS, some network file systems). f is renamed before it is
// closed, which ends its lock: until then, another process writing the
// same output leaves it alone (see removeStaleTemps). On error, f is left
// for the caller to close and remove; an error after the rename (of the
// folder's sync, or f's close) leaves the output in place.
func commitOutputTemp(f *os.File, path string, stale []string) error {
	if err := f.Sync(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("the output %s is written, but its folder could not be synced to disk: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	removeStaleTemps(stale)
	return nil
}

// removeStaleTemps removes the temporary files of stale (as
// createOutputTemp returned them) that it can lock, as no process holds
// them: left behind by a process killed while it wrote the same output,
// and not another one writing it now, whatever it is doing. It is best
// effort.
func removeStaleTemps(stale []string) {
	for _, name := range stale {
		f, err := os.Open(name)
		if err != nil {
			continue
		}
		if tryLock(f) == nil {
			_ = os.Remove(name)
		}
		f.Close()
	}
}

// globQuote escapes the characters of s that filepath.Match reads as a
// pattern.
func globQuote(s string) string {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '*', '?', '[', '\\':
			out = append(out, '\\')
		}
		out = append(out, s[i])
	}
	return string(out)
}
