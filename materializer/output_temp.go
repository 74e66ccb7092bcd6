package materializer

import (
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// createOutputTemp creates the temporary file that the output at path is
// written to before it is renamed over path: in the same folder, named
// ".NAME.NNN.tmp" (a name starting with "." is left out when a folder is
// read as a source or an input, should the process die before removing
// it), with the permissions the umask leaves of 0666, as any file larder
// writes. It also returns the temporary files of the same output that
// are there already, each with the time it was last written: see
// removeStaleTemps.
func createOutputTemp(path string) (*os.File, map[string]time.Time, error) {
	dir, prefix := filepath.Dir(path), "."+filepath.Base(path)+"."
	stale := map[string]time.Time{}
	if found, err := filepath.Glob(filepath.Join(dir, globQuote(prefix)+"*.tmp")); err == nil {
		for _, name := range found {
			if fi, err := os.Lstat(name); err == nil && fi.Mode().IsRegular() {
				stale[name] = fi.ModTime()
			}
		}
	}
	for range 100 {
		name := filepath.Join(dir, prefix+strconv.FormatUint(uint64(rand.Uint32()), 10)+".tmp")
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o666)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		return f, stale, err
	}
	return nil, nil, &fs.PathError{Op: "create", Path: filepath.Join(dir, prefix+"*.tmp"), Err: fs.ErrExist}
}

// removeStaleTemps removes the temporary files of stale (as
// createOutputTemp returned them) that were not written since: left behind
// by a process killed while it wrote the same output, and not another one
// writing it now. It is best effort.
func removeStaleTemps(stale map[string]time.Time) {
	for name, written := range stale {
		if fi, err := os.Lstat(name); err == nil && fi.ModTime().Equal(written) {
			_ = os.Remove(name)
		}
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
