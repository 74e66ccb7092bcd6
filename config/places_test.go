package config_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/larder-dev/larder/config"
)

// TestPlaces places a problem found after loading where its field is
// written, as the loader places its own: a field left out at the closest
// enclosing one.
func TestPlaces(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p1.yaml")
	yaml := `project: shop
entities:
  - {name: user, key: user_id, type: int64}
sources:
  - name: users
    path: data/users.parquet
    event_time: updated_at
views:
  - name: user_profile
    kind: latest
    entity: user
    source: users
    features:
      - {name: age, type: int64}
`
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	p, places, err := config.Loader{}.LoadPlaces(path)
	if err != nil {
		t.Fatal(err)
	}
	if p.File != path || p.FileName() != "p1.yaml" {
		t.Errorf("File = %q, FileName() = %q, want %q and p1.yaml", p.File, p.FileName(), path)
	}
	tests := []struct {
		field, want string
	}{
		{"sources[0].path", path + ":6:11: sources[0].path: gone"},
		{"views[0].features[0].type", path + ":14:27: views[0].features[0].type: gone"},
		// The column of a feature defaults to its name: the feature is placed.
		{"views[0].features[0].column", path + ":14:9: views[0].features[0].column: gone"},
		{"rankers[0].model", path + ":1:1: rankers[0].model: gone"},
	}
	for _, tt := range tests {
		if got := places.Problem(tt.field, "gone").String(); got != tt.want {
			t.Errorf("Problem(%q) = %q, want %q", tt.field, got, tt.want)
		}
	}
	var none *config.Places
	if got := none.Problem("sources[0].path", "gone").String(); got != ": sources[0].path: gone" {
		t.Errorf("a nil Places gives %q", got)
	}
}
