package materializer

import (
	"errors"
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
