package materializer_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/materializer"
	"github.com/parquet-go/parquet-go"
)

// twoFiles writes a source of two files in dir/data and returns the path of
// the second, whose rows all win their entities.
func twoFiles(tb testing.TB, dir string) string {
	tb.Helper()
	var a, b []scoreRow
	for i := range 3000 {
		a = append(a, scoreRow{int64(i), at(i % 60), float64(i)})
		b = append(b, scoreRow{int64(10000 + i), at(i % 60), float64(-i)})
	}
	writeParquet(tb, filepath.Join(dir, "data", "a.parquet"), a, smallGroups(1000)...)
	second := filepath.Join(dir, "data", "b.parquet")
	writeParquet(tb, second, b, smallGroups(1000)...)
	return second
}

func TestBrokenFileKeepsLiveGeneration(t *testing.T) {
	dir := t.TempDir()
	second := twoFiles(t, dir)
	good, err := os.ReadFile(second)
	if err != nil {
		t.Fatal(err)
	}
	p := projectFor(t, dir, "data", larder.TypeInt64, scoreFeature)
	fs := newFakeStore()
	m := materializer.New(p, fs, materializer.Options{Now: fixedClock(at(100))})
	if _, err := m.Run(context.Background(), "v"); err != nil {
		t.Fatal(err)
	}
	liveBefore, idBefore := fs.liveRows("v")

	mid := len(good) / 2
	tests := []struct {
		name   string
		broken func([]byte) []byte
	}{
		{"empty", func([]byte) []byte { return nil }},
		{"truncated", func(b []byte) []byte { return b[:mid] }},
		{"footer cut", func(b []byte) []byte { return b[:len(b)-4] }},
		{"page bytes flipped", func(b []byte) []byte {
			for i := mid; i < mid+8; i++ {
				b[i] ^= 0x5a
			}
			return b
		}},
		{"page bytes zeroed", func(b []byte) []byte {
			clear(b[mid-64 : mid+64])
			return b
		}},
		// The key and event-time pages are intact: the run fails only once
		// it reads the feature values, after it has begun a generation.
		{"feature page header zeroed", func(b []byte) []byte { return breakColumn(t, b, "score") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := os.WriteFile(second, tt.broken(append([]byte(nil), good...)), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := m.Run(context.Background(), "v")
			if err == nil || !strings.Contains(err.Error(), second) {
				t.Fatalf("Run error = %v, want one naming %s", err, second)
			}
			t.Log(err)
			live, id := fs.liveRows("v")
			if id != idBefore {
				t.Errorf("live generation = %d, want %d", id, idBefore)
			}
			if d := diffRows(live, liveBefore); d != "" {
				t.Errorf("live rows changed:\n%s", d)
			}
		})
	}
	// A run may begin a generation before it reads the whole source; every
	// one begun by a failed run must have been aborted.
	b, pub, ab := fs.counts()
	if pub != 1 || ab != b-1 {
		t.Errorf("%d generations begun, %d published, %d aborted; want every one of the failed runs aborted", b, pub, ab)
	}
	if b < 2 {
		t.Errorf("no failed run began a generation: the broken feature page should fail a run that has")
	}

}

// breakColumn returns the Parquet file b with the page header of the column
// chunk of column in its last row group zeroed, so that the file's footer
// and its other columns still read.
func breakColumn(tb testing.TB, b []byte, column string) []byte {
	tb.Helper()
	f, err := parquet.OpenFile(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		tb.Fatal(err)
	}
	leaf, ok := f.Schema().Lookup(column)
	if !ok {
		tb.Fatalf("no column %q", column)
	}
	groups := f.Metadata().RowGroups
	md := groups[len(groups)-1].Columns[leaf.ColumnIndex].MetaData
	at := md.DataPageOffset
	if md.DictionaryPageOffset > 0 {
		at = min(at, md.DictionaryPageOffset)
	}
	clear(b[at : at+16])
	return b
}

func TestFailedWriteAborts(t *testing.T) {
	dir := t.TempDir()
	twoFiles(t, dir)
	p := projectFor(t, dir, "data", larder.TypeInt64, scoreFeature)
	errGone := errors.New("redis gone")
	tests := []struct {
		name string
		// fail makes the run fail after n puts; it gets the run's cancel.
		fail    func(n int, cancel context.CancelFunc) error
		wantErr error
	}{
		{"context cancelled mid-write", func(n int, cancel context.CancelFunc) error {
			if n == 100 {
				cancel()
			}
			return nil
		}, context.Canceled},
		{"store fails mid-write", func(n int, _ context.CancelFunc) error {
			if n == 2500 {
				return errGone
			}
			return nil
		}, errGone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := newFakeStore()
			m := materializer.New(p, fs, materializer.Options{Now: fixedClock(at(100))})
			first, err := m.Run(context.Background(), "v")
			if err != nil {
				t.Fatal(err)
			}
			liveBefore, _ := fs.liveRows("v")

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			fs.onPut = func(n int) error { return tt.fail(n, cancel) }
			_, err = m.Run(ctx, "v")
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Run error = %v, want %v", err, tt.wantErr)
			}
			live, id := fs.liveRows("v")
			if id != first.Generation || diffRows(live, liveBefore) != "" {
				t.Errorf("live generation %d changed (was %d)", id, first.Generation)
			}
			if b, pub, ab := fs.counts(); b != 2 || pub != 1 || ab != 1 {
				t.Errorf("begins, publishes, aborts = %d, %d, %d; want 2, 1, 1", b, pub, ab)
			}

			fs.onPut = nil
			next, err := m.Run(context.Background(), "v")
			if err != nil {
				t.Fatalf("the run after the failed one: %v", err)
			}
			live, id = fs.liveRows("v")
			if id != next.Generation || next.Generation != first.Generation+2 || len(live) != 6000 {
				t.Errorf("next run published generation %d with %d rows; want generation %d with 6000", id, len(live), first.Generation+2)
			}
		})
	}
}

func TestRunRefusals(t *testing.T) {
	dir := t.TempDir()
	twoFiles(t, dir)
	p := projectFor(t, dir, "data", larder.TypeInt64, scoreFeature)
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name string
		ctx  context.Context
		view string
		want error
	}{
		{"unknown view", context.Background(), "nope", larder.ErrNotFound},
		{"context already ended", cancelled, "v", context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := newFakeStore()
			_, err := materializer.New(p, fs, materializer.Options{}).Run(tt.ctx, tt.view)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Run error = %v, want %v", err, tt.want)
			}
			if b, _, _ := fs.counts(); b != 0 {
				t.Errorf("a generation was begun")
			}
		})
	}
}
