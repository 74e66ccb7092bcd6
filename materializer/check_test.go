package materializer_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/materializer"
)

// TestCheckSources reports every problem of a view on its own, each at the
// field of the project file at fault, with the fix naming that file.
func TestCheckSources(t *testing.T) {
	dir := t.TempDir()
	writeRows([]wideRow{{UserID: 1, TS: baseTime}})(t, filepath.Join(dir, "w.parquet"))
	file := filepath.Join(dir, "p1.yaml")
	tests := []struct {
		name     string
		path     string
		features []larder.Feature
		want     []string // per problem: its field, then what it says
	}{
		{"three problems in one view", "w.parquet",
			[]larder.Feature{feature("a", larder.TypeInt64, "s"), feature("b", larder.TypeFloat64, "dd"), feature("c", larder.TypeBool, "f")},
			[]string{
				`views[0].features[0].type view v: source file ` + filepath.Join(dir, "w.parquet") + `: column "s" (the int64 feature "a") is BYTE_ARRAY STRING, want INT64 or INT32: fix the source or the type in p1.yaml`,
				`views[0].features[1].column view v: source file ` + filepath.Join(dir, "w.parquet") + ` has no column "dd" (the float64 feature "b"); did you mean "d"? its columns are`,
				`views[0].features[2].type view v: source file ` + filepath.Join(dir, "w.parquet") + `: column "f" (the bool feature "c") is FLOAT, want BOOLEAN: fix the source or the type in p1.yaml`,
			}},
		{"a misspelled column", "w.parquet", []larder.Feature{feature("x", larder.TypeFloat64, "dlsit")},
			[]string{`views[0].features[0].column view v: source file ` + filepath.Join(dir, "w.parquet") + ` has no column "dlsit" (the float64 feature "x"); did you mean "dlist"?`}},
		{"no file", "nothing.parquet", []larder.Feature{feature("x", larder.TypeFloat64, "d")},
			[]string{`sources[0].path view v: source events: ` + filepath.Join(dir, "nothing.parquet") + ` does not exist: check the source path in p1.yaml`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := projectFor(t, dir, tt.path, larder.TypeInt64, tt.features...)
			p.File = file
			got := materializer.CheckSources(p)
			if len(got) != len(tt.want) {
				t.Fatalf("CheckSources gives %d problems, want %d: %v", len(got), len(tt.want), got)
			}
			for i, sp := range got {
				if s := sp.Field + " " + sp.Error(); !strings.HasPrefix(s, tt.want[i]) {
					t.Errorf("problem %d:\n%s\nwant it to start with\n%s", i+1, s, tt.want[i])
				}
				var ce *materializer.ColumnError
				if strings.Contains(tt.want[i], "column") && !errors.As(sp, &ce) {
					t.Errorf("problem %d is not a *ColumnError: %v", i+1, sp)
				}
			}
		})
	}
}
