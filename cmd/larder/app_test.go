package main

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestRunErrors(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		stderr string
	}{
		{"unknown command", []string{"nope"}, "larder: unknown command \"nope\" for \"larder\"\n"},
		{"bad log level", []string{"--log-level", "loud", "views"}, "larder: --log-level \"loud\": want debug, info, warn or error\n"},
		{"views takes no argument", []string{"views", "extra"}, "larder: unknown command \"extra\" for \"larder views\"\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(t.Context(), tc.args, strings.NewReader(""), &stdout, &stderr)
			if code != 1 || stdout.Len() != 0 || stderr.String() != tc.stderr {
				t.Errorf("exit code %d, stdout %q, stderr %q; want 1, nothing, %q", code, stdout.String(), stderr.String(), tc.stderr)
			}
		})
	}
}

func TestRedisLogger(t *testing.T) {
	tests := []struct {
		name  string
		level slog.Level // of the command's logger; none when above error
		want  string
	}{
		{"info shows", slog.LevelInfo, "level=INFO msg=\"connection pool: failed to dial\" from=go-redis\n"},
		{"warn hides", slog.LevelWarn, ""},
		{"no logger yet", slog.LevelError + 1, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			r := &redisLogger{}
			if tc.level <= slog.LevelError {
				r.logger.Store(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{
					Level: tc.level,
					ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
						if a.Key == slog.TimeKey {
							return slog.Attr{}
						}
						return a
					},
				})))
			}
			r.Printf(t.Context(), "redis: connection pool: failed to %s", "dial")
			if buf.String() != tc.want {
				t.Errorf("logged %q, want %q", buf.String(), tc.want)
			}
		})
	}
}
