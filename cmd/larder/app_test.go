package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/larder-dev/larder/redistest"
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

// TestRedisAuthFailed connects with a wrong Redis user or password: the
// command says that authentication failed and which setting to fix, and
// serve stops rather than wait for a password that will not change.
func TestRedisAuthFailed(t *testing.T) {
	tiny := newTinyProject(t)
	redis := redistest.StartUser(t, "larder", "right-password")
	t.Setenv("LARDER_TEST_REDIS_PASSWORD", "wrong-password")
	tests := []struct {
		name     string
		settings string
		want     string
	}{
		{"wrong password in an environment variable", "  username: larder\n  password_env: LARDER_TEST_REDIS_PASSWORD\n",
			"authentication failed (WRONGPASS invalid username-password pair or user is disabled.): " +
				"check redis.username (larder) and the password in environment variable LARDER_TEST_REDIS_PASSWORD (redis.password_env) in CONFIG"},
		{"wrong password in the file", "  username: larder\n  password: nope\n",
			"authentication failed (WRONGPASS invalid username-password pair or user is disabled.): " +
				"check redis.username (larder) and redis.password in CONFIG"},
		{"no password for a server that asks for one", "",
			"authentication failed (NOAUTH Authentication required.): the server asks for a password: " +
				"set redis.password_env to the environment variable that holds it (or redis.password), and redis.username if it is not the default user, in CONFIG"},
	}
	// This one asks every client for a password.
	locked := redistest.Start(t)
	if err := locked.Client().ConfigSet(t.Context(), "requirepass", "right-password").Err(); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := redis.Addr
			if tt.settings == "" {
				addr = locked.Addr
			}
			config := filepath.Join(t.TempDir(), "larder.yaml")
			src, err := os.ReadFile(tiny.config)
			if err != nil {
				t.Fatal(err)
			}
			src = append(src, fmt.Sprintf("redis:\n  addresses: [%q]\n%s", addr, tt.settings)...)
			if err := os.WriteFile(config, src, 0o644); err != nil {
				t.Fatal(err)
			}
			want := "larder: redis [" + addr + "]: " + strings.ReplaceAll(tt.want, "CONFIG", config) + "\n"
			for _, args := range [][]string{{"views"}, {"serve", "--listen", "127.0.0.1:0"}} {
				// A serve that waited for Redis instead would end here.
				ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
				r := larderAt(t, ctx, t0, append([]string{"-c", config}, args...)...)
				cancel()
				if r.code != 1 || r.stderr != want {
					t.Errorf("larder %s: exit %d, stderr\n%s\nwant 1 and\n%s", args[0], r.code, r.stderr, want)
				}
			}
		})
	}
}
