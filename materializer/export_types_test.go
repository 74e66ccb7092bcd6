package materializer_test

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/materializer"
	"github.com/parquet-go/parquet-go"
)

// checkExportedRow checks that the exported features of view v in row
// (read by readColumns) are want's values when ok, null otherwise; what
// names the row in errors.
func checkExportedRow(tb testing.TB, v *larder.View, row map[string][]parquet.Value, want larder.Row, ok bool, what string) {
	tb.Helper()
	for f, feat := range v.Features {
		got := materializer.CellValue(feat.Type, cellOf(row, v.Name+":"+feat.Name))
		w := larder.Null
		if ok {
			w = want.Values[f]
		}
		if !got.Equal(w) {
			tb.Errorf("%s, %s (%s): exported %v, want %v", what, feat.Name, feat.Type, got, w)
		}
	}
}

// cellOf returns the values of the column named name in a row read by
// readColumns, for a flat column or a list's elements.
func cellOf(row map[string][]parquet.Value, name string) []parquet.Value {
	if vs, ok := row[name]; ok {
		return vs
	}
	for col, vs := range row {
		if strings.HasPrefix(col, name+".") {
			return vs
		}
	}
	return nil
}

// TestExportAllTypes exports every type a latest view stores (vectors,
// bytes, dictionary-encoded strings, narrow integers read as int64, lists
// with and without elements, null lists) as of a run's time, and checks
// that each exported value equals what that run stored for its key.
func TestExportAllTypes(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 5))
	dir := t.TempDir()
	writeParquet(t, filepath.Join(dir, "data", "part-0.parquet"), randomAllTypes(rng, 1500, 200, 60), smallGroups(300)...)
	writeParquet(t, filepath.Join(dir, "data", "part-1.parquet"), randomAllTypes(rng, 900, 200, 60), smallGroups(200)...)
	p := projectFor(t, dir, "data", larder.TypeInt64, allTypesFeatures...)
	v := p.View("v")
	runTime := baseTime.Add(45 * time.Second)
	fs, _ := runView(t, p, runTime)
	stored, _ := fs.liveRows("v")
	m := materializer.New(p, fs, materializer.Options{})

	var spine []spineRow
	for id := int64(-5); id < 205; id++ { // some keys without rows
		spine = append(spine, spineRow{UserID: &id, At: runTime, Label: id % 2})
	}
	writeParquet(t, filepath.Join(dir, "spine.parquet"), spine)
	out := filepath.Join(dir, "train.parquet")
	if _, err := m.Export(context.Background(), materializer.ExportArgs{Spine: "spine.parquet", Output: out, Timestamp: "at", Features: []string{"v:*"}}); err != nil {
		t.Fatal(err)
	}
	rows := readColumns(t, out)
	if len(rows) != len(spine) {
		t.Fatalf("%d rows exported, want %d", len(rows), len(spine))
	}
	found := 0
	for i, row := range rows {
		id := *spine[i].UserID
		want, ok := stored[larder.Int64Key(id)]
		if ok {
			found++
		}
		checkExportedRow(t, v, row, want, ok, fmt.Sprintf("user %d", id))
	}
	if found < 150 {
		t.Fatalf("only %d of the spine's keys have a row: the test checks too little", found)
	}
}

// TestExportCandidatesMatchBruteForce exports a candidates view's lists as
// of spine times on and between its rows' times (ties on time and score,
// repeated pairs, nulls, NaN scores, rows after every spine time), with
// int64 and string keys, and compares each with the list a brute-force
// run as of that time stores; the lists as of the run time also equal
// what a run at that time stored. Some cases read enough rows that the
// folded rows are compacted while they are read, join the spine in
// chunks, judge rows stale by a max age, or null infinite scores and
// oversized lists by the view's value rules.
func TestExportCandidatesMatchBruteForce(t *testing.T) {
	type intSpine struct {
		UserID *int64    `parquet:"user_id,optional"`
		At     time.Time `parquet:"at,timestamp(millisecond)"`
	}
	type strSpine struct {
		UserID *string   `parquet:"user_id,optional"`
		At     time.Time `parquet:"at,timestamp(millisecond)"`
	}
	for _, tt := range []struct {
		name          string
		strings       bool
		topK, procs   int
		seed          uint64
		rows, users   int // source rows per file (three files), users
		spine, chunk  int
		maxAge        time.Duration
		rules         bool // null infinite scores and lists over 52 bytes
		atRun, cutMin int  // the least rows at the run time and lists cut at topK checked
	}{
		{name: "int keys", topK: 5, procs: 1, seed: 1, rows: 800, users: 30, spine: 400, atRun: 40, cutMin: 50},
		{name: "int keys, parallel", topK: 8, procs: 3, seed: 2, rows: 800, users: 30, spine: 400, atRun: 40, cutMin: 50},
		{name: "string keys, float scores", strings: true, topK: 4, procs: 2, seed: 3, rows: 800, users: 30, spine: 400, atRun: 40, cutMin: 50},
		{name: "few rows, chunks, max age, rules", topK: 6, procs: 3, seed: 4, rows: 300, users: 12, spine: 2000,
			chunk: 97, maxAge: 2 * time.Millisecond, rules: true, atRun: 20, cutMin: 20},
		{name: "compacted folds, chunks, rules", topK: 6, procs: 3, seed: 5, rows: 12000, users: 12, spine: 2000,
			chunk: 97, rules: true, atRun: 200, cutMin: 200},
		{name: "string keys, compacted folds, rules", strings: true, topK: 6, procs: 2, seed: 6, rows: 12000, users: 12, spine: 2000,
			chunk: 133, rules: true, atRun: 200, cutMin: 200},
	} {
		t.Run(tt.name, func(t *testing.T) {
			withProcs(t, tt.procs)
			rng := rand.New(rand.NewPCG(tt.seed, 77))
			dir := t.TempDir()
			runTime := baseTime.Add(time.Minute)
			var parts [][]intPair
			for range 3 {
				parts = append(parts, randomPairs(rng, tt.rows, tt.users, 40, runTime))
			}
			records := writePairs(t, filepath.Join(dir, "pairs"), parts, tt.strings, 333)
			keyType := larder.TypeInt64
			if tt.strings {
				keyType = larder.TypeString
			}
			p := candProject(t, dir, "pairs", keyType, keyType, "", tt.topK)
			v := p.View("v")
			v.MaxAge = tt.maxAge
			if tt.rules {
				v.NonFinite, v.Oversize, v.MaxValueBytes = larder.PolicyNull, larder.PolicyNull, 52
			}
			fs, _ := runView(t, p, runTime)
			stored, _ := fs.liveRows("v")
			m := materializer.New(p, fs, materializer.Options{})

			// Spine times step by milliseconds over the rows' times, as the
			// rows do, so that many tie with rows; some rows are at the run
			// time, some keys have no rows, some are null.
			var ints []intSpine
			var strs []strSpine
			var keys []*larder.Key
			var times []time.Time
			for i := range tt.spine {
				at := runTime.Add(time.Duration(rng.IntN(70)-60) * time.Millisecond)
				if i%5 == 0 {
					at = runTime
				}
				id := maybe(rng, 0.03, int64(rng.IntN(tt.users+10)-tt.users/4-3))
				var k *larder.Key
				if id != nil {
					k = ptr(larder.Int64Key(*id))
				}
				if tt.strings {
					var s *string
					if id != nil {
						s = ptr(fmt.Sprintf("u%d", *id))
						k = ptr(larder.StringKey(*s))
					}
					strs = append(strs, strSpine{UserID: s, At: at})
				} else {
					ints = append(ints, intSpine{UserID: id, At: at})
				}
				keys, times = append(keys, k), append(times, at)
			}
			if tt.strings {
				writeParquet(t, filepath.Join(dir, "spine.parquet"), strs, smallGroups(90)...)
			} else {
				writeParquet(t, filepath.Join(dir, "spine.parquet"), ints, smallGroups(90)...)
			}
			out := filepath.Join(dir, "train.parquet")
			rep, err := m.Export(context.Background(), materializer.ExportArgs{Spine: "spine.parquet", Output: out, Timestamp: "at",
				Features: []string{"v:*"}, ChunkRows: cmp.Or(tt.chunk, 150)})
			if err != nil {
				t.Fatal(err)
			}
			if want := []string{"v:" + larder.CandidatesFeature, "v:" + larder.ScoresFeature, "v:status"}; !slices.Equal(rep.Columns, want) {
				t.Fatalf("columns %v, want %v", rep.Columns, want)
			}
			rows := readColumns(t, out)
			found, atRun, cut, stale, nulled := 0, 0, 0, 0, 0
			refs := map[time.Time]map[larder.Key]larder.Row{}
			for i, row := range rows {
				ref := refs[times[i]]
				if ref == nil {
					ref, _ = bruteCandidates(records, times[i], tt.topK)
					refs[times[i]] = ref
				}
				var want larder.Row
				ok := false
				if keys[i] != nil {
					want, ok = ref[*keys[i]]
				}
				wantStatus := "missing"
				if ok {
					wantStatus = "present"
					if v.Status(true, want.EventTime, times[i]) == larder.StatusStale {
						wantStatus, ok = "stale", false
						stale++
					}
				}
				if got := string(cellOf(row, "v:status")[0].ByteArray()); got != wantStatus {
					t.Errorf("row %d (%v at %v): status %q, want %q", i, keys[i], times[i], got, wantStatus)
				}
				if !ok {
					checkExportedRow(t, v, row, want, false, fmt.Sprintf("row %d (%v at %v)", i, keys[i], times[i]))
					continue
				}
				found++
				if len(want.Values[1].Vector()) == tt.topK {
					cut++
				}
				if tt.rules {
					vals := slices.Clone(want.Values)
					for f, x := range vals {
						if !x.Finite() || x.Size() > v.ValueLimit() {
							vals[f] = larder.Null
							nulled++
						}
					}
					want.Values = vals
				}
				if times[i].Equal(runTime) {
					atRun++
					if s, in := stored[*keys[i]]; !in || !s.Values[0].Equal(want.Values[0]) || !s.Values[1].Equal(want.Values[1]) {
						t.Errorf("row %d (%v at the run time): the run stored %v, the reference %v", i, keys[i], s.Values, want.Values)
					}
				}
				checkExportedRow(t, v, row, want, true, fmt.Sprintf("row %d (%v at %v)", i, keys[i], times[i]))
			}
			t.Logf("%d rows with a list, %d at the run time, %d cut at top k, %d stale, %d nulled by the rules", found, atRun, cut, stale, nulled)
			if found < tt.spine/10 || atRun < tt.atRun || cut < tt.cutMin || (tt.maxAge > 0) != (stale > 0) || tt.rules != (nulled > 0) {
				t.Fatalf("%d rows with a list, %d at the run time, %d cut at top k, %d stale, %d nulled by the rules: the test checks too little",
					found, atRun, cut, stale, nulled)
			}
		})
	}
}

// TestExportCandidatesFromViewRefused checks that a candidates view fed by
// another view's live generation, which has no history, is refused with
// the reason and what to export instead.
func TestExportCandidatesFromViewRefused(t *testing.T) {
	dir := t.TempDir()
	p := viewCandProject(t, dir, larder.TypeInt64, larder.TypeInt64, "item_stats", "popularity", 3)
	writeParquet(t, filepath.Join(dir, "spine.parquet"), []struct {
		CategoryID int64     `parquet:"category_id"`
		At         time.Time `parquet:"at,timestamp(millisecond)"`
	}{{CategoryID: 1, At: baseTime}})
	m := materializer.New(p, nopStore{}, materializer.Options{})
	_, err := m.Export(context.Background(), materializer.ExportArgs{Spine: "spine.parquet", Output: filepath.Join(dir, "out.parquet"), Timestamp: "at", Features: []string{"v:*"}})
	if err == nil || !strings.Contains(err.Error(), "keeps no history") || !strings.Contains(err.Error(), "export item_stats's features") || !larder.IsInvalid(err) {
		t.Fatalf("err = %v, want an invalid-argument error saying why and what to export instead", err)
	}
}
