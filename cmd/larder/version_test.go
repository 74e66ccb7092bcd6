package main

import (
	"regexp"
	"testing"
	"time"
)

// TestVersion prints the version, commit, Go and ONNX Runtime lines.
func TestVersion(t *testing.T) {
	r := larderAt(t, t.Context(), time.Now(), "version")
	mustSucceed(t, r, "version")
	want := regexp.MustCompile(`^larder \S+\ncommit .+\ngo go1\.\S+ \w+/\w+\nonnxruntime .+\n$`)
	if !want.MatchString(r.stdout) {
		t.Errorf("larder version printed:\n%s", r.stdout)
	}
}
