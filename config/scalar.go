package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/larder-dev/larder"
)

// day is the unit larder.yaml adds to Go's durations.
const day = 24 * time.Hour

// parseDuration parses a Go duration such as 90s or 1h30m, which may start
// with a number of days: 7d, 1d12h. A sign may lead; Validate decides where
// negative durations are wrong. It returns an error that says how to write
// a duration.
func parseDuration(s string) (time.Duration, error) {
	bad := func(why string) error {
		return fmt.Errorf("invalid duration %q: %swrite a number and a unit (s, m, h or d), such as 90s, 48h or 7d", s, why)
	}
	rest, neg := s, false
	if r, ok := strings.CutPrefix(rest, "-"); ok {
		rest, neg = r, true
	} else {
		rest = strings.TrimPrefix(rest, "+")
	}
	var total time.Duration
	before, after, days := strings.Cut(rest, "d")
	if days {
		if !digits(before) {
			return 0, bad("")
		}
		n, err := strconv.ParseInt(before, 10, 64)
		if err != nil || n > math.MaxInt64/int64(day) {
			return 0, bad("too long; ")
		}
		total, rest = time.Duration(n)*day, after
	}
	if !days || rest != "" {
		if rest == "" || rest[0] == '-' || rest[0] == '+' {
			return 0, bad("")
		}
		v, err := time.ParseDuration(rest)
		if err != nil {
			return 0, bad("")
		}
		if total+v < total {
			return 0, bad("too long; ")
		}
		total += v
	}
	if neg {
		total = -total
	}
	return total, nil
}

// parseSize parses a size in bytes: a whole number, alone or followed by
// B, KiB (1024 bytes) or MiB (1024 KiB), such as 65536, 64KiB or 1MiB. It
// returns an error that says how to write a size.
func parseSize(s string) (int, error) {
	bad := func(why string) error {
		return fmt.Errorf("invalid size %q: %swrite a whole number of bytes, KiB or MiB, such as 65536, 64KiB or 1MiB", s, why)
	}
	num, unit := s, 1
	for _, u := range []struct {
		suffix string
		bytes  int
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"B", 1}} {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			num, unit = strings.TrimSpace(n), u.bytes
			break
		}
	}
	if !digits(num) {
		return 0, bad("")
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n > math.MaxInt32/int64(unit) {
		return 0, bad("too large; ")
	}
	if n == 0 {
		return 0, bad("must be positive; ")
	}
	return int(n) * unit, nil
}

func digits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// checkSchedule returns an error when spec is not a cron schedule that the
// scheduler accepts: five fields, or a descriptor such as @hourly or @every 1h.
// A time zone that starts spec (CRON_TZ=Europe/Paris) is left for
// Project.Validate to refuse, with its own message; the rest is checked.
func checkSchedule(spec string) error {
	fields := spec
	if _, rest, ok := larder.SplitScheduleZone(spec); ok {
		fields = rest
	}
	if _, err := cron.ParseStandard(fields); err != nil {
		return fmt.Errorf("invalid schedule %q: %w; write five fields (minute hour day-of-month month day-of-week) such as \"0 * * * *\", or a descriptor such as @hourly", spec, err)
	}
	return nil
}
