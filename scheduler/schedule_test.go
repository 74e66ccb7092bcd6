package scheduler_test

import (
	"testing"
	"time"

	"github.com/larder-dev/larder/scheduler"
)

func TestSchedule(t *testing.T) {
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Fatal(err)
	}
	utc := func(s string) time.Time {
		t.Helper()
		at, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return at
	}
	tests := []struct {
		spec       string
		loc        *time.Location
		at         string
		prev, next string
	}{
		{"*/10 * * * *", time.UTC, "2026-12-01T03:21:07Z", "2026-12-01T03:20:00Z", "2026-12-01T03:30:00Z"},
		{"*/10 * * * *", time.UTC, "2026-12-01T03:20:00Z", "2026-12-01T03:20:00Z", "2026-12-01T03:30:00Z"},
		{"30 * * * *", time.UTC, "2026-12-01T03:29:59Z", "2026-12-01T02:30:00Z", "2026-12-01T03:30:00Z"},
		{"@hourly", time.UTC, "2026-12-01T03:00:00.5Z", "2026-12-01T03:00:00Z", "2026-12-01T04:00:00Z"},
		// 03:00 in Paris is 02:00 UTC in winter and 01:00 UTC in summer.
		{"0 3 * * *", paris, "2026-12-01T12:00:00Z", "2026-12-01T02:00:00Z", "2026-12-02T02:00:00Z"},
		{"0 3 * * *", paris, "2026-07-01T12:00:00Z", "2026-07-01T01:00:00Z", "2026-07-02T01:00:00Z"},
		// Across the spring change (29 March 2026): one tick a day still.
		{"0 3 * * *", paris, "2026-03-29T00:30:00Z", "2026-03-28T02:00:00Z", "2026-03-29T01:00:00Z"},
		{"0 0 1 1 *", time.UTC, "2026-12-01T00:00:00Z", "2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z"},
		// @every ticks at multiples of its period since the epoch, in any zone.
		{"@every 2s", paris, "2026-12-01T03:00:01.5Z", "2026-12-01T03:00:00Z", "2026-12-01T03:00:02Z"},
		{"@every 2s", time.UTC, "2026-12-01T03:00:02Z", "2026-12-01T03:00:02Z", "2026-12-01T03:00:04Z"},
		{"@every 1h30m", time.UTC, "2026-12-01T00:10:00Z", "2026-12-01T00:00:00Z", "2026-12-01T01:30:00Z"},
	}
	for _, tc := range tests {
		t.Run(tc.spec+"@"+tc.at, func(t *testing.T) {
			s, err := scheduler.Parse(tc.spec, tc.loc)
			if err != nil {
				t.Fatal(err)
			}
			at := utc(tc.at)
			if got := s.Prev(at); !got.Equal(utc(tc.prev)) {
				t.Errorf("Prev(%s) = %s, want %s", tc.at, got.UTC().Format(time.RFC3339Nano), tc.prev)
			}
			if got := s.Next(at); !got.Equal(utc(tc.next)) {
				t.Errorf("Next(%s) = %s, want %s", tc.at, got.UTC().Format(time.RFC3339Nano), tc.next)
			}
		})
	}
	if _, err := scheduler.Parse("61 * * * *", nil); err == nil {
		t.Error("a bad spec parsed")
	}
}
