package demo

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"

	"github.com/larder-dev/larder/internal/parquettest"
)

// testNow is the end of every test data set.
var testNow = time.Date(2026, 3, 14, 15, 9, 26, 535_000_000, time.UTC)

// smallOptions is a data set small enough to write in a fraction of a
// second, yet with two event files of two row groups each.
func smallOptions() Options {
	return Options{Users: 600, Items: 150, Events: 2*eventFileRows - 50_000, Seed: 42, Now: testNow}
}

func generate(tb testing.TB, dir string, opts Options) *Dataset {
	tb.Helper()
	d, err := Generate(context.Background(), dir, opts)
	if err != nil {
		tb.Fatalf("Generate: %v", err)
	}
	return d
}

func readRows[T any](tb testing.TB, path string) []T {
	tb.Helper()
	rows, err := parquet.ReadFile[T](path)
	if err != nil {
		tb.Fatalf("read %s: %v", path, err)
	}
	return rows
}

func eventFiles(tb testing.TB, dir string) []string {
	tb.Helper()
	files, err := filepath.Glob(filepath.Join(dir, EventsDir, "*"))
	if err != nil {
		tb.Fatal(err)
	}
	return files
}

func TestGenerateWritesFiles(t *testing.T) {
	dir := t.TempDir()
	var calls, lastDone, lastTotal int64
	opts := smallOptions()
	opts.Progress = func(done, total int64) {
		if done <= lastDone {
			t.Errorf("progress went from %d to %d", lastDone, done)
		}
		calls++
		lastDone, lastTotal = done, total
	}
	d := generate(t, dir, opts)

	if d.Users != opts.Users || d.Items != opts.Items || d.Events != opts.Events {
		t.Errorf("dataset counts = %d users, %d items, %d events; want %d, %d, %d",
			d.Users, d.Items, d.Events, opts.Users, opts.Items, opts.Events)
	}
	if want := int64(d.UserRows + d.ItemRows + d.Events + d.CandidateRows); lastDone != want || lastTotal != want || calls < 3 {
		t.Errorf("progress ended at %d/%d after %d calls; want %d/%d", lastDone, lastTotal, calls, want, want)
	}

	users := readRows[userRow](t, filepath.Join(dir, UsersFile))
	items := readRows[itemRow](t, filepath.Join(dir, ItemsFile))
	if len(users) != d.UserRows || len(users) <= d.Users {
		t.Errorf("users.parquet has %d rows; want UserRows = %d, more than the %d users (older versions)", len(users), d.UserRows, d.Users)
	}
	if len(items) != d.ItemRows || len(items) <= d.Items {
		t.Errorf("items.parquet has %d rows; want ItemRows = %d, more than the %d items", len(items), d.ItemRows, d.Items)
	}

	files := eventFiles(t, dir)
	want := []string{"part-0000.parquet", "part-0001.parquet"}
	if got := baseNames(files); !slices.Equal(got, want) {
		t.Fatalf("event files = %v, want %v", got, want)
	}
	var events []eventRow
	for _, f := range files {
		pf := parquettest.Open(t, f)
		for i, rg := range pf.RowGroups() {
			if n := rg.NumRows(); n > rowGroupRows {
				t.Errorf("%s row group %d has %d rows; want at most %d", filepath.Base(f), i, n, rowGroupRows)
			}
		}
		if len(pf.RowGroups()) < 2 {
			t.Errorf("%s has %d row groups; want 2 (%d rows)", filepath.Base(f), len(pf.RowGroups()), pf.NumRows())
		}
		events = append(events, readRows[eventRow](t, f)...)
	}
	if len(events) != d.Events {
		t.Fatalf("events files hold %d rows, want %d", len(events), d.Events)
	}

	t.Run("events", func(t *testing.T) {
		from, to := testNow.Add(-History).UnixMilli(), testNow.UnixMilli()
		userIDs, itemIDs := idSet(users, func(u userRow) int64 { return u.UserID }), idSet(items, func(it itemRow) int64 { return it.ItemID })
		types := map[string]int{}
		for i, e := range events {
			if i > 0 && e.EventTime <= events[i-1].EventTime {
				t.Fatalf("event %d at %d is not after event %d at %d: files must be in strict time order", i, e.EventTime, i-1, events[i-1].EventTime)
			}
			if e.EventTime < from || e.EventTime >= to {
				t.Fatalf("event %d at %v is outside the %v before Now", i, time.UnixMilli(e.EventTime).UTC(), History)
			}
			if !userIDs[e.UserID] || !itemIDs[e.ItemID] {
				t.Fatalf("event %d refers to user %d / item %d, which are not in the profiles", i, e.UserID, e.ItemID)
			}
			if (e.EventType == eventPurchase) != (e.PricePaid != nil) {
				t.Fatalf("event %d is a %s with price_paid %v: only purchases have a price", i, e.EventType, e.PricePaid)
			}
			if e.DwellSeconds <= 0 {
				t.Fatalf("event %d has dwell_seconds %v", i, e.DwellSeconds)
			}
			types[e.EventType]++
		}
		views, clicks, purchases := types[eventView], types[eventClick], types[eventPurchase]
		if len(types) != 3 || clicks == 0 || purchases == 0 || views < clicks || clicks < purchases {
			t.Errorf("event types = %v; want views > clicks > purchases > 0 and nothing else", types)
		}
		t.Logf("event types: %v", types)
	})

	t.Run("latest", func(t *testing.T) {
		// The newest version of every entity, as a latest view picks it, is
		// what the data set holds for the ground truth and TrainingSet.
		newest := map[int64]userRow{}
		lastInFile := map[int64]userRow{}
		for _, u := range users {
			if n, ok := newest[u.UserID]; !ok || u.UpdatedAt > n.UpdatedAt {
				newest[u.UserID] = u
			}
			lastInFile[u.UserID] = u
		}
		if len(newest) != d.Users {
			t.Fatalf("users.parquet has %d distinct users, want %d", len(newest), d.Users)
		}
		var misordered, tasteChanged int
		for i := range d.pop.users {
			want := d.pop.users[i].row
			got := newest[want.UserID]
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("newest row of user %d = %+v, want %+v", want.UserID, got, want)
			}
			if time.UnixMilli(got.UpdatedAt).After(testNow) || testNow.Sub(time.UnixMilli(got.UpdatedAt)) > 20*24*time.Hour {
				t.Errorf("user %d was updated at %v: want within 20 days before Now", got.UserID, time.UnixMilli(got.UpdatedAt))
			}
			if lastInFile[want.UserID].UpdatedAt != want.UpdatedAt {
				misordered++
			}
		}
		for _, u := range users {
			if u.FavoriteCategory != newest[u.UserID].FavoriteCategory {
				tasteChanged++
			}
		}
		if misordered == 0 || tasteChanged == 0 {
			t.Errorf("%d users have their newest version before an older one in the file, %d old versions another favourite category; want some of both, so that `latest` matters", misordered, tasteChanged)
		}

		newestItem := map[int64]itemRow{}
		for _, it := range items {
			if n, ok := newestItem[it.ItemID]; !ok || it.UpdatedAt > n.UpdatedAt {
				newestItem[it.ItemID] = it
			}
		}
		for i := range d.pop.items {
			want := d.pop.items[i].row
			if got := newestItem[want.ItemID]; !reflect.DeepEqual(got, want) {
				t.Fatalf("newest row of item %d = %+v, want %+v", want.ItemID, got, want)
			}
		}
	})

	t.Run("values", func(t *testing.T) {
		for _, u := range users {
			var sum float64
			for _, p := range u.prefs() {
				if p <= 0 {
					t.Fatalf("user %d has a preference of %v", u.UserID, p)
				}
				sum += float64(p)
			}
			if sum < 0.99 || sum > 1.01 || u.AvgOrderValue <= 0 || u.FavoriteCategory < 1 || u.FavoriteCategory > numCategories {
				t.Fatalf("user row %+v: want preferences summing to 1, a positive order value and a category id in 1..8", u)
			}
		}
		for _, it := range items {
			var norm float64
			for _, e := range it.Embedding {
				norm += float64(e) * float64(e)
			}
			if len(it.Embedding) != embeddingDim || norm < 0.99 || norm > 1.01 {
				t.Fatalf("item %d embedding %v: want a unit vector of length %d", it.ItemID, it.Embedding, embeddingDim)
			}
			if it.Price <= 0 || it.Discount < 0 || it.Discount > 0.5 || it.Rating < 1 || it.Rating > 5 ||
				categories[it.CategoryID-1].name != it.Category {
				t.Fatalf("item row %+v is out of range", it)
			}
		}
	})
}

func TestFileSchemas(t *testing.T) {
	dir := t.TempDir()
	opts := smallOptions()
	opts.Events = 1000
	generate(t, dir, opts)

	type column struct {
		name    string
		kind    parquet.Kind
		logical string // the logical type as parquet-go prints it, "" for none
	}
	tests := []struct {
		file string
		want []column
	}{
		{UsersFile, []column{
			{"user_id", parquet.Int64, "INT(64,true)"},
			{"updated_at", parquet.Int64, "TIMESTAMP(isAdjustedToUTC=true,unit=MILLIS)"},
			{"age", parquet.Int64, "INT(64,true)"},
			{"country_code", parquet.ByteArray, "STRING"},
			{"is_premium", parquet.Boolean, ""},
			{"avg_order_value", parquet.Double, ""},
			{"ctr_7d", parquet.Float, ""},
			{"pref_electronics", parquet.Float, ""},
			{"pref_grocery", parquet.Float, ""},
		}},
		{ItemsFile, []column{
			{"item_id", parquet.Int64, "INT(64,true)"},
			{"category", parquet.ByteArray, "STRING"},
			{"price", parquet.Double, ""},
			{"discount", parquet.Float, ""},
			{"is_new", parquet.Boolean, ""},
		}},
		{filepath.Join(EventsDir, "part-0000.parquet"), []column{
			{"user_id", parquet.Int64, "INT(64,true)"},
			{"item_id", parquet.Int64, "INT(64,true)"},
			{"event_time", parquet.Int64, "TIMESTAMP(isAdjustedToUTC=true,unit=MILLIS)"},
			{"event_type", parquet.ByteArray, "STRING"},
			{"dwell_seconds", parquet.Float, ""},
			{"price_paid", parquet.Double, ""},
		}},
	}
	for _, tt := range tests {
		t.Run(filepath.Base(tt.file), func(t *testing.T) {
			schema := parquettest.Open(t, filepath.Join(dir, tt.file)).Schema()
			for _, c := range tt.want {
				f := field(schema, c.name)
				if f == nil {
					t.Errorf("no column %q", c.name)
					continue
				}
				logical := ""
				if lt := f.Type().LogicalType(); lt != nil {
					logical = lt.String()
				}
				if f.Type().Kind() != c.kind || logical != c.logical {
					t.Errorf("column %s is %v %q, want %v %q", c.name, f.Type().Kind(), logical, c.kind, c.logical)
				}
				if wantOptional := c.name == "price_paid"; f.Optional() != wantOptional {
					t.Errorf("column %s optional = %v, want %v", c.name, f.Optional(), wantOptional)
				}
			}
		})
	}

	t.Run("embedding", func(t *testing.T) {
		f := field(parquettest.Open(t, filepath.Join(dir, ItemsFile)).Schema(), "embedding")
		if f == nil || f.Leaf() || !hasLogical[*format.ListType](f) {
			t.Fatalf("embedding = %v, want a LIST", f)
		}
		elem := f.Fields()[0].Fields()[0]
		if elem.Type().Kind() != parquet.Float {
			t.Errorf("embedding elements are %v, want FLOAT", elem.Type().Kind())
		}
	})
}

func TestDeterministic(t *testing.T) {
	opts := smallOptions()
	opts.Events = eventFileRows + 10_000 // two files, written concurrently
	a, b, c := t.TempDir(), t.TempDir(), t.TempDir()
	generate(t, a, opts)
	generate(t, b, opts)
	opts.Seed++
	generate(t, c, opts)

	files := []string{ProjectFile, UsersFile, ItemsFile}
	for _, f := range eventFiles(t, a) {
		files = append(files, filepath.Join(EventsDir, filepath.Base(f)))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			fa, fb, fc := readFile(t, filepath.Join(a, f)), readFile(t, filepath.Join(b, f)), readFile(t, filepath.Join(c, f))
			if !bytes.Equal(fa, fb) {
				t.Errorf("two runs with the same options wrote different bytes")
			}
			if f != ProjectFile && bytes.Equal(fa, fc) {
				t.Errorf("another seed wrote the same bytes")
			}
		})
	}
}

func TestOptions(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{"no now", Options{}, "Options.Now is required"},
		{"negative users", Options{Now: testNow, Users: -1}, "Options.Users is -1"},
		{"negative items", Options{Now: testNow, Items: -2}, "Options.Items is -2"},
		{"negative events", Options{Now: testNow, Events: -3}, "Options.Events is -3"},
		{"defaults", Options{Now: testNow}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := New(tt.opts)
			if tt.wantErr != "" {
				if err == nil || !bytes.Contains([]byte(err.Error()), []byte(tt.wantErr)) {
					t.Fatalf("New error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d.Users != DefaultUsers || d.Items != DefaultItems || d.Events != DefaultEvents {
				t.Errorf("defaults = %d users, %d items, %d events", d.Users, d.Items, d.Events)
			}
			if !d.Now.Equal(testNow) {
				t.Errorf("Now = %v, want %v", d.Now, testNow)
			}
		})
	}
}

func TestWriteReplacesStaleEvents(t *testing.T) {
	dir := t.TempDir()
	opts := smallOptions()
	generate(t, dir, opts) // two event files
	opts.Events = 500
	generate(t, dir, opts)
	if got := baseNames(eventFiles(t, dir)); !slices.Equal(got, []string{"part-0000.parquet"}) {
		t.Fatalf("event files after a smaller run = %v, want only part-0000.parquet", got)
	}
	if n := len(readRows[eventRow](t, filepath.Join(dir, EventsDir, "part-0000.parquet"))); n != 500 {
		t.Errorf("part-0000 has %d rows, want 500", n)
	}
}

func TestGenerateCanceled(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	opts := smallOptions()
	opts.Progress = func(done, total int64) {
		if done > int64(eventFileRows/2) {
			cancel()
		}
	}
	_, err := Generate(ctx, dir, opts)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Generate error = %v, want context.Canceled", err)
	}
	for _, f := range eventFiles(t, dir) {
		if filepath.Ext(f) == ".tmp" {
			t.Errorf("left %s behind", filepath.Base(f))
		}
	}
	if _, err := os.Stat(filepath.Join(dir, ProjectFile)); !os.IsNotExist(err) {
		t.Errorf("larder.yaml written by a canceled run (stat error %v)", err)
	}
}

// TestGenerateMillionEvents checks the default data set: a million events.
// How long it takes is BenchmarkGenerate's to measure, not a test's to
// bound: a busy machine, or -race, takes longer.
func TestGenerateMillionEvents(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a million events")
	}
	dir := t.TempDir()
	start := time.Now()
	d := generate(t, dir, Options{Seed: 1, Now: testNow})
	elapsed := time.Since(start)

	var rows int64
	var size int64
	for _, f := range eventFiles(t, dir) {
		pf := parquettest.Open(t, f)
		rows += pf.NumRows()
		st, _ := os.Stat(f)
		size += st.Size()
	}
	if rows != DefaultEvents || d.Events != DefaultEvents {
		t.Errorf("wrote %d events, want %d", rows, DefaultEvents)
	}
	t.Logf("generated %d users (%d rows), %d items (%d rows), %d events (%.1f MB) in %v",
		d.Users, d.UserRows, d.Items, d.ItemRows, rows, float64(size)/1e6, elapsed.Round(time.Millisecond))
}

// BenchmarkGenerate measures the default data set: 10k users, 2k items and
// a million events.
func BenchmarkGenerate(b *testing.B) {
	dir := b.TempDir()
	opts := Options{Seed: 1, Now: testNow}
	var runs int
	for b.Loop() {
		generate(b, dir, opts)
		runs++
	}
	b.ReportMetric(float64(DefaultEvents*runs)/b.Elapsed().Seconds(), "events/s")
}

// hasLogical reports whether f has the logical type T, such as
// *format.ListType.
func hasLogical[T format.LogicalTypeValue](f parquet.Field) bool {
	lt := f.Type().LogicalType()
	if lt == nil {
		return false
	}
	_, ok := lt.Value.(T)
	return ok
}

func field(s *parquet.Schema, name string) parquet.Field {
	for _, f := range s.Fields() {
		if f.Name() == name {
			return f
		}
	}
	return nil
}

func idSet[T any](rows []T, id func(T) int64) map[int64]bool {
	m := make(map[int64]bool, len(rows))
	for _, r := range rows {
		m[id(r)] = true
	}
	return m
}

func baseNames(paths []string) []string {
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i] = filepath.Base(p)
	}
	slices.Sort(out)
	return out
}

func readFile(tb testing.TB, path string) []byte {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}
