package materializer_test

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/larder-dev/larder"
)

// TestLatestKeyLayouts checks the latest view against the brute-force one
// for int64 keys laid out in the ways that choose how the first pass keeps
// the best rows: keys close together (a table indexed by key), keys far
// apart (hash tables), and keys close together but for a few far away
// (hash tables too: the range is too wide for a table).
func TestLatestKeyLayouts(t *testing.T) {
	tests := []struct {
		name string
		key  func(k int64, rng *rand.Rand) int64
	}{
		{"dense", func(k int64, _ *rand.Rand) int64 { return k - 150 }},
		{"sparse", func(k int64, _ *rand.Rand) int64 { return k * 1_000_000_007 }},
		{"dense with outliers", func(k int64, rng *rand.Rand) int64 {
			if k%50 == 0 {
				return k << 40
			}
			return k
		}},
	}
	for _, tt := range tests {
		for _, procs := range []int{1, 3} {
			t.Run(fmt.Sprintf("%s/procs=%d", tt.name, procs), func(t *testing.T) {
				withProcs(t, procs)
				rng := rand.New(rand.NewPCG(uint64(procs), 17))
				dir := t.TempDir()
				var records []record
				for i := range 3 {
					rows := randomAllTypes(rng, 1200, 300, 60)
					for j := range rows {
						if k := rows[j].UserID; k != nil {
							*k = tt.key(*k, rng)
						}
						records = append(records, rows[j].record())
					}
					writeParquet(t, filepath.Join(dir, "data", fmt.Sprintf("part-%d.parquet", i)), rows, smallGroups(150)...)
				}
				runTime := baseTime.Add(45 * time.Second)
				p := projectFor(t, dir, "data", larder.TypeInt64, allTypesFeatures...)
				fs, rep := runView(t, p, runTime)
				got, _ := fs.liveRows("v")
				want, wantSkipped := bruteLatest(records, runTime)
				if d := diffRows(got, want); d != "" {
					t.Errorf("rows differ from the brute-force result:\n%s", d)
				}
				if !equalCounts(rep.Skipped, wantSkipped) {
					t.Errorf("skipped = %v, want %v", rep.Skipped, wantSkipped)
				}
			})
		}
	}
}
