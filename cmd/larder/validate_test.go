package main

import (
	"path/filepath"
	"testing"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		config string
		code   int
		// stdout and stderr name golden files; "" means the stream stays empty.
		stdout, stderr string
	}{
		{name: "good", config: filepath.Join("testdata", "tiny", "larder.yaml"), code: 0, stdout: "validate_good"},
		// Every problem of the file is printed with its file:line:col, not
		// only the first.
		{name: "bad", config: filepath.Join("testdata", "bad.yaml"), code: 1, stderr: "validate_bad"},
		{name: "missing", config: filepath.Join("testdata", "missing.yaml"), code: 1, stderr: "validate_missing"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := larderAt(t, t.Context(), t0, "-c", tc.config, "validate")
			if r.code != tc.code {
				t.Errorf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, tc.code, r.stdout, r.stderr)
			}
			for _, out := range []struct{ golden, got, stream string }{{tc.stdout, r.stdout, "stdout"}, {tc.stderr, r.stderr, "stderr"}} {
				if out.golden != "" {
					checkGolden(t, out.golden, out.got)
				} else if out.got != "" {
					t.Errorf("unexpected %s:\n%s", out.stream, out.got)
				}
			}
		})
	}
}
