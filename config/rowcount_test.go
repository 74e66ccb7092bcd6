package config_test

import (
	"strings"
	"testing"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/config"
)

// TestParseRowCount reads an aggregation without a column, which counts
// rows, and refuses one that also asks for another function.
func TestParseRowCount(t *testing.T) {
	src := `project: shop
entities:
  - {name: user, key: user_id, type: int64}
sources:
  - {name: ev, path: ev.parquet, event_time: ts}
views:
  - name: user_activity
    kind: aggregate
    entity: user
    source: ev
    aggregations:
      - {name: events, functions: [count], windows: [1h, 1d]}
`
	p, err := config.Parse("larder.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	v := p.View("user_activity")
	if len(v.Features) != 2 || v.Features[0].Name != "events_count_1h" || v.Features[1].Type != larder.TypeInt64 {
		t.Errorf("features %+v, want events_count_1h and events_count_1d, int64", v.Features)
	}
	_, err = config.Parse("larder.yaml", []byte(strings.Replace(src, "functions: [count]", "functions: [count, sum]", 1)))
	if err == nil || !strings.Contains(err.Error(), "larder.yaml:12:9: views[0].aggregations[0].column: is required: the source column to aggregate (an aggregation without one counts rows") {
		t.Errorf("a row count with sum: %v", err)
	}
}
