//go:build !unix

package materializer

// syncDir does nothing: this system syncs no folder (Windows cannot open
// one to sync it, and its file systems journal a rename themselves).
func syncDir(string) error { return nil }
