package config

import (
	"strings"
	"testing"
)

func TestParseByteSize(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    int
		wantErr string
	}{
		{"64MiB", 64 << 20, ""},
		{"1KiB", 1024, ""},
		{"2GiB", 2 << 30, ""},
		{"500KB", 500_000, ""},
		{"3MB", 3_000_000, ""},
		{"1GB", 1_000_000_000, ""},
		{"1048576B", 1 << 20, ""},
		{"1048576", 1 << 20, ""},
		{"16 MiB", 16 << 20, ""},
		{"0B", 0, ""},
		{"MiB", 0, `invalid size "MiB": write a whole number and a unit`},
		{"1.5MiB", 0, `invalid size "1.5MiB"`},
		{"-1MiB", 0, `invalid size "-1MiB"`},
		{"64mb", 0, `invalid size "64mb"`},
		{"64 megabytes", 0, `invalid size "64 megabytes"`},
		{"99999999999999999999GiB", 0, `invalid size "99999999999999999999GiB": too large; `},
		{"9000000000GiB", 0, "too large"},
	} {
		got, err := parseByteSize(tc.in)
		switch {
		case tc.wantErr == "" && (err != nil || got != tc.want):
			t.Errorf("parseByteSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("parseByteSize(%q) = %d, %v; want an error containing %q", tc.in, got, err, tc.wantErr)
		}
	}
	for n, want := range map[int]string{64 << 20: "64MiB", 1536: "1536B", 1000: "1000B", 3 << 30: "3GiB", 2048: "2KiB"} {
		if got := byteSizeText(n); got != want {
			t.Errorf("byteSizeText(%d) = %q, want %q", n, got, want)
		}
	}
}
