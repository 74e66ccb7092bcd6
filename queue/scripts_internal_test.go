package queue

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/larder-dev/larder/redistest"
)

// TestT9 checks that the scripts compare the times of an earlier release,
// whose fraction has no trailing zeros, with this one's, nine digits long.
func TestT9(t *testing.T) {
	client := redistest.Start(t).Client()
	script := redis.NewScript(prelude + `return t9(ARGV[4])`)
	for in, want := range map[string]string{
		"2026-12-03T11:00:00Z":           "2026-12-03T11:00:00.000000000Z",
		"2026-12-03T11:00:00.9Z":         "2026-12-03T11:00:00.900000000Z",
		"2026-12-03T11:00:00.400000000Z": "2026-12-03T11:00:00.400000000Z",
		"not a time":                     "not a time",
	} {
		got, err := script.Run(context.Background(), client, []string{"s"}, "p:", "", 0, in).Text()
		if err != nil || got != want {
			t.Errorf("t9(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}
