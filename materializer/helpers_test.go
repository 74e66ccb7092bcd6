package materializer_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/materializer"
)

// baseTime is the origin of the fixtures' event times.
var baseTime = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// writeParquet writes rows to path as a Parquet file.
func writeParquet[T any](tb testing.TB, path string, rows []T, opts ...parquet.WriterOption) {
	tb.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		tb.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	w := parquet.NewGenericWriter[T](f, opts...)
	if _, err := w.Write(rows); err != nil {
		tb.Fatalf("write %s: %v", path, err)
	}
	if err := w.Close(); err != nil {
		tb.Fatalf("close writer of %s: %v", path, err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
}

// smallGroups makes a writer cut row groups and pages often, so that the
// fixtures exercise the paths across row group and page boundaries.
func smallGroups(rowsPerGroup int64) []parquet.WriterOption {
	return []parquet.WriterOption{parquet.MaxRowsPerRowGroup(rowsPerGroup), parquet.PageBufferSize(512)}
}

// projectFor returns a validated project in dir with one entity "user" keyed
// by user_id of keyType, one source at path (relative to dir) with event
// time column "ts", and one latest view "v" of features.
func projectFor(tb testing.TB, dir, path string, keyType larder.Type, features ...larder.Feature) *larder.Project {
	tb.Helper()
	p := &larder.Project{
		Name:     "test",
		Dir:      dir,
		Entities: []*larder.Entity{{Name: "user", Key: "user_id", KeyType: keyType}},
		Sources:  []*larder.Source{{Name: "events", Path: path, EventTime: "ts"}},
		Views: []*larder.View{{
			Name: "v", Kind: larder.KindLatest, Entity: "user", Source: "events", Features: features,
		}},
	}
	p.SetDefaults()
	if err := p.Validate(); err != nil {
		tb.Fatalf("invalid test project: %v", err)
	}
	return p
}

func feature(name string, t larder.Type, column string) larder.Feature {
	return larder.Feature{Name: name, Type: t, Column: column}
}

// fixedClock returns a clock that always reads t.
func fixedClock(t time.Time) func() time.Time { return func() time.Time { return t } }

// record is one source row of a brute-force computation: its key (nil when
// null), its event time (nil when null) and the values it would store.
type record struct {
	key    *larder.Key
	ts     *time.Time
	values []larder.Value
}

// bruteLatest computes a latest view the slow, obvious way: for every record
// in read order, keep it if it is at least as new as the entity's current
// one. It returns the rows by key and the skip counts.
func bruteLatest(records []record, runTime time.Time) (map[larder.Key]larder.Row, map[string]int64) {
	rows := make(map[larder.Key]larder.Row)
	skipped := make(map[string]int64)
	for _, r := range records {
		switch {
		case r.key == nil:
			skipped[materializer.SkipNullKey]++
			continue
		case r.ts == nil:
			skipped[materializer.SkipNullEventTime]++
			continue
		case r.ts.After(runTime):
			skipped[materializer.SkipAfterRunTime]++
			continue
		}
		if cur, ok := rows[*r.key]; ok && r.ts.Before(cur.EventTime) {
			continue
		}
		rows[*r.key] = larder.Row{EventTime: *r.ts, Values: r.values}
	}
	return rows, skipped
}

// diffRows describes how got differs from want, or returns "".
func diffRows(got, want map[larder.Key]larder.Row) string {
	var b strings.Builder
	n := 0
	report := func(format string, args ...any) {
		if n < 10 {
			fmt.Fprintf(&b, format+"\n", args...)
		}
		n++
	}
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			report("key %#v: missing", k)
			continue
		}
		if !g.EventTime.Equal(w.EventTime) {
			report("key %#v: event time %v, want %v", k, g.EventTime, w.EventTime)
		}
		if len(g.Values) != len(w.Values) {
			report("key %#v: %d values, want %d", k, len(g.Values), len(w.Values))
			continue
		}
		for i := range w.Values {
			if !g.Values[i].Equal(w.Values[i]) {
				report("key %#v: value %d = %v (%s), want %v (%s)", k, i, g.Values[i], g.Values[i].Type(), w.Values[i], w.Values[i].Type())
			}
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			report("key %#v: unexpected", k)
		}
	}
	if n > 10 {
		fmt.Fprintf(&b, "... and %d more differences\n", n-10)
	}
	return b.String()
}

func equalCounts(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func ptr[T any](v T) *T { return &v }

// maybe returns a pointer to v, or nil with probability pNull.
func maybe[T any](rng *rand.Rand, pNull float64, v T) *T {
	if rng.Float64() < pNull {
		return nil
	}
	return &v
}
