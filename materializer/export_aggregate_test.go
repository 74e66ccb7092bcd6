package materializer_test

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/materializer"
	"github.com/parquet-go/parquet-go"
)

// strSpineRow is a spine row with a string key.
type strSpineRow struct {
	UserID *string   `parquet:"user_id,optional"`
	At     time.Time `parquet:"at,timestamp(microsecond)"`
	Label  int64     `parquet:"label"`
}

// TestExportAggregateWindows compares every exported value of an aggregate
// view with the brute-force reference, for entities with hundreds of events
// and of spine rows each, so that every window slides over many events:
// spine rows exactly on an event's time and on its window edges (and a
// microsecond off them), before an entity's first event, tied with each
// other, and after the last event; events in read order that is also time
// order (the windows' folds go on from one spine row to the next) and
// shuffled (they start over); NaNs, zeros of both signs and nulls among the
// values; count_distinct of numbers and strings; int64 and string keys;
// the spine in one chunk and in many.
func TestExportAggregateWindows(t *testing.T) {
	runTime := baseTime.Add(time.Hour)
	edges := []time.Duration{10 * time.Second, 30 * time.Second, time.Minute, 2 * time.Minute, 5 * time.Minute}
	for _, c := range []struct {
		name      string
		sorted    bool
		stringKey bool
		chunk     int
	}{
		{"time order", true, false, 0},
		{"time order chunks", true, false, 97},
		{"shuffled", false, false, 0},
		{"shuffled chunks", false, false, 131},
		{"string keys", true, true, 0},
		{"string keys shuffled", false, true, 113},
	} {
		t.Run(c.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(7, uint64(len(c.name))))
			dir := t.TempDir()
			rows := randomRows(rng, 2400, 9, runTime)
			for i := range rows {
				// Six entities (and three without an event), each with
				// about 300 events over the 7 minutes before the run.
				rows[i].UserID = maybe(rng, 0.01, int64(rng.IntN(9)))
			}
			if c.sorted {
				slices.SortStableFunc(rows, func(a, b randomRow) int {
					switch {
					case a.TS == nil && b.TS == nil:
						return 0
					case a.TS == nil:
						return -1
					case b.TS == nil:
						return 1
					}
					return a.TS.Compare(*b.TS)
				})
			}
			var events []event
			for i := range rows {
				e := rows[i].event()
				if c.stringKey && e.key != nil {
					k := larder.StringKey("u" + strconv.FormatInt(e.key.Int64(), 10))
					e.key = &k
				}
				events = append(events, e)
			}
			// Two files, read in name order.
			half := len(rows) / 2
			if c.stringKey {
				str := make([]strKeyRow, len(rows))
				for i, r := range rows {
					str[i] = strKeyRow{TS: r.TS, I64: r.I64, F64: r.F64, S: r.S}
					if r.UserID != nil {
						str[i].UserID = ptr("u" + strconv.FormatInt(*r.UserID, 10))
					}
				}
				writeParquet(t, filepath.Join(dir, "data", "part-0.parquet"), str[:half], smallGroups(300)...)
				writeParquet(t, filepath.Join(dir, "data", "part-1.parquet"), str[half:], smallGroups(300)...)
			} else {
				writeParquet(t, filepath.Join(dir, "data", "part-0.parquet"), rows[:half], smallGroups(300)...)
				writeParquet(t, filepath.Join(dir, "data", "part-1.parquet"), rows[half:], smallGroups(300)...)
			}
			// Spine times: on events and their windows' edges, a
			// microsecond off them, random, and after every event.
			var ats []time.Time
			for range 900 {
				var at time.Time
				switch r := rng.IntN(10); {
				case r < 5:
					e := rows[rng.IntN(len(rows))]
					if e.TS == nil {
						continue
					}
					at = e.TS.Add(edges[rng.IntN(len(edges))] * time.Duration(rng.IntN(2)))
					at = at.Add(time.Duration(rng.IntN(3)-1) * time.Microsecond)
				case r < 9:
					at = runTime.Add(-time.Duration(rng.Int64N(int64(8 * time.Minute))))
				default:
					at = runTime.Add(time.Duration(rng.IntN(30)) * time.Second)
				}
				ats = append(ats, at.Truncate(time.Microsecond))
			}
			var spine []spineRow
			var strSpine []strSpineRow
			var keys []*larder.Key
			for i, at := range ats {
				id := maybe(rng, 0.02, int64(rng.IntN(10)))
				var k *larder.Key
				if id != nil {
					kk := larder.Int64Key(*id)
					if c.stringKey {
						kk = larder.StringKey("u" + strconv.FormatInt(*id, 10))
					}
					k = &kk
				}
				keys = append(keys, k)
				spine = append(spine, spineRow{UserID: id, At: at, Label: int64(i)})
				sr := strSpineRow{At: at, Label: int64(i)}
				if id != nil {
					sr.UserID = ptr("u" + strconv.FormatInt(*id, 10))
				}
				strSpine = append(strSpine, sr)
			}
			if c.stringKey {
				writeParquet(t, filepath.Join(dir, "spine.parquet"), strSpine, smallGroups(89)...)
			} else {
				writeParquet(t, filepath.Join(dir, "spine.parquet"), spine, smallGroups(89)...)
			}
			keyType := larder.TypeInt64
			aggs := randomAggregations(t)
			if c.stringKey {
				keyType = larder.TypeString
				all := funcs(larder.AggCount, larder.AggSum, larder.AggMean, larder.AggMin, larder.AggMax, larder.AggLast, larder.AggCountDistinct)
				aggs = []larder.Aggregation{
					{Column: "i64", Type: larder.TypeInt64, Functions: all, Windows: windows(t, "10s", "1m", "5m")},
					{Column: "f64", Type: larder.TypeFloat64, Functions: all, Windows: windows(t, "5m", "30s")},
					{Column: "s", Type: larder.TypeString, Functions: funcs(larder.AggCount, larder.AggLast, larder.AggCountDistinct), Windows: windows(t, "1m", "5m")},
				}
			}
			p := aggregateProject(t, dir, "data", keyType, aggs...)
			v := p.View("v")
			m := materializer.New(p, nopStore{}, materializer.Options{Now: fixedClock(runTime)})
			out := filepath.Join(dir, "train.parquet")
			rep, err := m.Export(context.Background(), materializer.ExportArgs{
				Spine: "spine.parquet", Output: out, Timestamp: "at", Features: []string{"v:*"}, ChunkRows: c.chunk,
			})
			if err != nil {
				t.Fatal(err)
			}
			if rep.SpineRows != int64(len(ats)) {
				t.Fatalf("report = %+v, want %d spine rows", rep, len(ats))
			}
			got := readExport(t, out)
			byKey := map[larder.Key][]event{}
			for _, e := range events {
				if e.key != nil {
					byKey[*e.key] = append(byKey[*e.key], e)
				}
			}
			diffs, values, present := 0, 0, 0
			for i, at := range ats {
				row := got[i]
				if row["label"].Int64() != int64(i) {
					t.Fatalf("row %d: label %v", i, row["label"])
				}
				var want larder.Row
				has := false
				if k := keys[i]; k != nil {
					rows, _ := bruteAggregate(v, byKey[*k], at)
					want, has = rows[*k]
				}
				status := "missing"
				if has {
					status = "present"
					present++
				}
				if g := string(row["v:status"].ByteArray()); g != status {
					t.Errorf("row %d (key %v at %v): status %q, want %q", i, keys[i], at, g, status)
				}
				for f, feat := range v.Features {
					w := larder.Null
					if has {
						w = want.Values[f]
					}
					values++
					if g := materializer.CellValue(feat.Type, []parquet.Value{row["v:"+feat.Name]}); !g.Equal(w) {
						if diffs < 10 {
							t.Errorf("row %d (key %v at %v): %s = %v, want %v", i, keys[i], at, feat.Name, g, w)
						}
						diffs++
					}
				}
			}
			if diffs > 10 {
				t.Errorf("... and %d more differences", diffs-10)
			}
			if present < len(ats)/2 {
				t.Errorf("only %d of %d spine rows have a row: the test checks too little", present, len(ats))
			}
			t.Logf("%d spine rows (%d with a row), %d values checked", len(ats), present, values)
		})
	}
}
