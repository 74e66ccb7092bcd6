package larder_test

import (
	"testing"

	"github.com/larder-dev/larder"
)

func TestSuggest(t *testing.T) {
	columns := []string{"user_id", "event_time", "event_type", "dwell_seconds", "price_paid", "tenure_days"}
	tests := []struct {
		name  string
		known []string
		want  string
	}{
		{"sever", []string{"server", "redis"}, "server"},
		{"SUM", []string{"count", "sum"}, "sum"},
		{"coutn", []string{"count", "sum"}, "count"},
		{"dwell_secs", columns, "dwell_seconds"},
		{"price_payed", columns, "price_paid"},
		{"tenure_dys", columns, "tenure_days"},
		{"EventTime", columns, "event_time"},
		// A swap of two letters next to each other is one edit.
		{"tiel", []string{"tile", "max_age"}, "tile"},
		{"feilds", []string{"fields", "view"}, "fields"},
		{"ievw", []string{"view"}, ""},
		{"colour", columns, ""},
		{"age", columns, ""},
		{"x", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := larder.Suggest(tt.name, tt.known); got != tt.want {
				t.Errorf("Suggest(%q) = %q, want %q", tt.name, got, tt.want)
			}
		})
	}
}
