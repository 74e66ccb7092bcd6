package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/config"
)

// batchingLine is the line of base after which the cases add a batching
// mapping to the home_feed ranker.
const batchingLine = 44

func withBatching(tb testing.TB, batching string) string {
	tb.Helper()
	return edit(tb, base, batchingLine, "    top_k: 10", "    top_k: 10\n"+batching)
}

func TestParseBatching(t *testing.T) {
	tests := []struct {
		name string
		yaml string // "" leaves batching out
		want *larder.Batching
	}{
		{"none", "", nil},
		{"null", "    batching:", nil},
		{"every field", "    batching: {max_delay: 500us, max_rows: 256, max_queue: 16}",
			&larder.Batching{MaxDelay: 500 * time.Microsecond, MaxRows: 256, MaxQueue: 16}},
		{"block mapping", "    batching:\n      max_delay: 5ms",
			&larder.Batching{MaxDelay: 5 * time.Millisecond, MaxRows: larder.DefaultBatchMaxRows, MaxQueue: larder.DefaultBatchMaxQueue}},
		{"defaults", "    batching: {}",
			&larder.Batching{MaxDelay: larder.DefaultBatchMaxDelay, MaxRows: larder.DefaultBatchMaxRows, MaxQueue: larder.DefaultBatchMaxQueue}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := base
			if tt.yaml != "" {
				src = withBatching(t, tt.yaml)
			}
			p, err := config.Loader{LookupEnv: env(nil)}.Parse("larder.yaml", []byte(src))
			if err != nil {
				t.Fatal(err)
			}
			got := p.Ranker("home_feed").Batching
			switch {
			case tt.want == nil && got != nil:
				t.Errorf("batching = %+v, want none", *got)
			case tt.want != nil && (got == nil || *got != *tt.want):
				t.Errorf("batching = %+v, want %+v", got, *tt.want)
			}
		})
	}
}

func TestParseBatchingBad(t *testing.T) {
	tests := []struct {
		name      string
		yaml      string
		wantLine  int
		wantCol   int
		wantField string
		wantMsg   string
	}{
		{"unknown field", "    batching: {max_delay: 2ms, max_wait: 1ms}", 45, 32, "rankers[0].batching.max_wait",
			`unknown field "max_wait"`},
		{"not a mapping", "    batching: true", 45, 15, "rankers[0].batching",
			"want a mapping of max_delay, max_rows, max_queue; got true"},
		{"not a duration", "    batching: {max_delay: soon}", 45, 27, "rankers[0].batching.max_delay",
			`invalid duration "soon"`},
		{"a bare number for a duration", "    batching: {max_delay: 2}", 45, 27, "rankers[0].batching.max_delay",
			`invalid duration "2"`},
		{"negative delay", "    batching: {max_delay: -2ms}", 45, 27, "rankers[0].batching.max_delay",
			"must be positive"},
		{"zero delay", "    batching:\n      max_delay: 0s", 46, 18, "rankers[0].batching.max_delay",
			"must be positive"},
		{"zero rows", "    batching: {max_rows: 0}", 45, 26, "rankers[0].batching.max_rows",
			"must be positive: the most candidates one model run scores"},
		{"negative queue", "    batching: {max_queue: -1}", 45, 27, "rankers[0].batching.max_queue",
			"must be positive: the most requests that may wait"},
		{"string rows", "    batching: {max_rows: many}", 45, 26, "rankers[0].batching.max_rows",
			`want a whole number; got "many"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.Loader{LookupEnv: env(nil)}.Parse("larder.yaml", []byte(withBatching(t, tt.yaml)))
			ps := problems(t, err)
			if len(ps) != 1 {
				t.Fatalf("got %d problems, want 1:\n%v", len(ps), err)
			}
			p := ps[0]
			if p.Line != tt.wantLine || p.Column != tt.wantCol || p.Field != tt.wantField || !strings.Contains(p.Msg, tt.wantMsg) {
				t.Errorf("got %s\nwant larder.yaml:%d:%d: %s: ...%s...", p, tt.wantLine, tt.wantCol, tt.wantField, tt.wantMsg)
			}
		})
	}
}

// TestValidateBatching checks the rule Project.Validate holds for projects
// built in code: no negative batching setting.
func TestValidateBatching(t *testing.T) {
	p, err := config.Loader{LookupEnv: env(nil)}.Parse("larder.yaml", []byte(withBatching(t, "    batching: {}")))
	if err != nil {
		t.Fatal(err)
	}
	p.Ranker("home_feed").Batching = &larder.Batching{MaxDelay: -time.Millisecond, MaxRows: -1, MaxQueue: -1}
	err = p.Validate()
	for _, field := range []string{"rankers[0].batching.max_delay", "rankers[0].batching.max_rows", "rankers[0].batching.max_queue"} {
		if err == nil || !strings.Contains(err.Error(), field+": must be positive") {
			t.Errorf("Validate = %v, want a problem at %s", err, field)
		}
	}
}
