package ingest_test

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/ingest"
)

// TestMapperRows maps events of a Redis stream (text) and of a Kafka
// topic (JSON) to rows, and refuses what cannot apply, the view's value
// rules included, with the reason.
func TestMapperRows(t *testing.T) {
	p := testProject(t)
	m := ingest.NewMapper(p.Stream("clicks"))
	row, err := m.Row(fields(map[string]any{"user_id": "7", "ts": "2026-05-01T12:00:00Z", "clicks": "3", "url": "/a", "score": "0.25"}))
	if err != nil || row.Key.Int64() != 7 || !row.Row.EventTime.Equal(t0) || row.Row.Values[0].Int64() != 3 || row.Row.Values[1].Str() != "/a" || row.Row.Values[2].Float64() != 0.25 {
		t.Errorf("text event: %+v, %v", row, err)
	}
	row, err = m.Row(fields(map[string]any{"user_id": json.Number("8"), "ts": json.Number("1777636800000"), "clicks": json.Number("4"), "url": nil}))
	if err != nil || row.Key.Int64() != 8 || row.Row.Values[0].Int64() != 4 || !row.Row.Values[1].IsNull() || !row.Row.Values[2].IsNull() {
		t.Errorf("JSON event: %+v, %v", row, err)
	}
	// The first time in milliseconds taken: 1973-03-03T09:46:40Z.
	if row, err := m.Row(fields(map[string]any{"user_id": "1", "ts": "100000000000"})); err != nil || row.Row.EventTime.Year() != 1973 {
		t.Errorf("1e11 milliseconds: %+v, %v; want 1973", row, err)
	}
	// The view's value rules apply: a NaN is null by default.
	if row, err := m.Row(fields(map[string]any{"user_id": "1", "ts": "1777636800000", "score": "NaN"})); err != nil || !row.Row.Values[2].IsNull() {
		t.Errorf("a NaN score: %+v, %v; want null", row, err)
	}
	for _, tc := range []struct {
		event map[string]any
		want  string
	}{
		{map[string]any{"ts": "1777636800000"}, `no entity key: field "user_id" is missing`},
		{map[string]any{"user_id": "1"}, `no event time: field "ts" is missing`},
		{map[string]any{"user_id": "1", "ts": "yesterday"}, `"yesterday" is neither RFC 3339 text`},
		// Seconds since the Unix epoch, read as milliseconds, are January
		// 1970: refused, not counted older than every stored row.
		{map[string]any{"user_id": "1", "ts": "1777636800"}, `event time (field "ts"): 1777636800 looks like seconds since the Unix epoch (as milliseconds it is 1970-01-21T13:47:16.8Z): a number is read as milliseconds, such as 1777636800000`},
		{map[string]any{"user_id": "1", "ts": json.Number("1777636800")}, `1777636800 looks like seconds since the Unix epoch`},
		{map[string]any{"user_id": "1", "ts": "99999999999"}, `99999999999 looks like seconds since the Unix epoch`},
		{map[string]any{"user_id": "1", "ts": "0"}, `event time (field "ts"): 0 is before 1973 as milliseconds since the Unix epoch (1970-01-01T00:00:00Z): a number is read as milliseconds, such as 1777636800000 for 2026-05-01T12:00:00Z`},
		{map[string]any{"user_id": "1", "ts": "-5"}, `-5 is before 1973 as milliseconds`},
		{map[string]any{"user_id": "1", "ts": "1777636800000", "clicks": "1.5"}, `feature clicks (field "clicks"): "1.5" is not an int64`},
		{map[string]any{"user_id": "1", "ts": "1777636800000", "clicks": true}, `want an int64 value, got a bool`},
	} {
		if _, err := m.Row(fields(tc.event)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("event %v: %v, want an error with %q", tc.event, err, tc.want)
		}
	}
}

// TestMapperRefusesFutureTimes refuses an event time more than
// larder.MaxEventSkew past the clock, as Push does, for a latest and an
// aggregate view: such a row would win against every real event until
// its time came.
func TestMapperRefusesFutureTimes(t *testing.T) {
	now := time.Now()
	for _, m := range []*ingest.Mapper{
		ingest.NewMapper(testProject(t).Stream("clicks")),
		ingest.NewMapper(tileProject(t, t.TempDir(), nil).Stream("ev")),
	} {
		kind := m.View().Kind
		for _, ts := range []string{
			"2999-01-01T00:00:00Z",
			"99999999999999", // milliseconds: year 5138
			now.Add(time.Hour).UTC().Format(time.RFC3339),
			strconv.FormatInt(now.Add(2*larder.MaxEventSkew).UnixMilli(), 10),
		} {
			_, err := m.Row(fields(map[string]any{"user_id": "1", "ts": ts}))
			if err == nil || !strings.Contains(err.Error(), `event time (field "ts"): `) || !strings.Contains(err.Error(), "past the clock of larder ingest") {
				t.Errorf("%s view, event time %s: %v, want it refused as from the future", kind, ts, err)
			}
		}
		// Within the skew allowed for clocks that drift: taken.
		for _, ts := range []string{
			now.UTC().Format(time.RFC3339Nano),
			strconv.FormatInt(now.Add(larder.MaxEventSkew/2).UnixMilli(), 10),
		} {
			if _, err := m.Row(fields(map[string]any{"user_id": "1", "ts": ts})); err != nil {
				t.Errorf("%s view, event time %s: %v, want it taken", kind, ts, err)
			}
		}
	}
}

func fields(kv map[string]any) func(string) (any, bool) {
	return func(f string) (any, bool) { v, ok := kv[f]; return v, ok }
}

// TestMapperReceived checks an event's time against the later of the
// host's clock and the time the transport took the event in: a host whose
// clock runs behind takes events that were not from the future when they
// were sent, and still refuses those that were.
func TestMapperReceived(t *testing.T) {
	m := ingest.NewMapper(testProject(t).Stream("clicks"))
	now := time.Now()
	at := func(d time.Duration) func(string) (any, bool) {
		return fields(map[string]any{"user_id": "1", "ts": strconv.FormatInt(now.Add(d).UnixMilli(), 10)})
	}
	redis := ingest.Received{At: now.Add(time.Hour), Clock: "the clock of Redis"}
	if _, err := m.RowReceived(at(30*time.Minute), redis); err != nil {
		t.Errorf("an event half an hour before the transport took it in: %v", err)
	}
	if _, err := m.RowReceived(at(2*time.Hour), redis); err == nil || !strings.Contains(err.Error(), "past the clock of Redis") {
		t.Errorf("an event an hour after the transport took it in: %v, want it refused by the transport's time", err)
	}
	// A transport's time behind the host's does not widen anything.
	old := ingest.Received{At: now.Add(-time.Hour), Clock: "the clock of Redis"}
	if _, err := m.RowReceived(at(30*time.Minute), old); err == nil || !strings.Contains(err.Error(), "past the clock of larder ingest") {
		t.Errorf("an event half an hour ahead of the host: %v, want it refused by the host's clock", err)
	}
}
