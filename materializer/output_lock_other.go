//go:build !unix

package materializer

import (
	"errors"
	"os"
)

// tryLock fails: this system has no flock, so no temporary file is taken
// for one left behind (see removeStaleTemps).
func tryLock(*os.File) error { return errors.ErrUnsupported }
