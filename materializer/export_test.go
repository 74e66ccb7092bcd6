package materializer_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/materializer"
	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/encoding/thrift"
	"github.com/parquet-go/parquet-go/format"
)

// spineRow is a row of a training-set spine: a key, a time and a label.
type spineRow struct {
	UserID *int64    `parquet:"user_id,optional"`
	At     time.Time `parquet:"at,timestamp(microsecond)"`
	Label  int64     `parquet:"label"`
}

// readExport reads an export's rows, each a map from column name to value.
func readExport(tb testing.TB, path string) []map[string]parquet.Value {
	tb.Helper()
	var out []map[string]parquet.Value
	for _, cols := range readColumns(tb, path) {
		m := make(map[string]parquet.Value, len(cols))
		for name, vs := range cols {
			m[name] = vs[len(vs)-1]
		}
		out = append(out, m)
	}
	return out
}

// exportProject is a project over the random rows of data/: an aggregate
// view "agg" of every function, and a latest view "lat" of four columns
// with a max age of 20 seconds, both keeping non-finite values.
func exportProject(tb testing.TB, dir string) *larder.Project {
	tb.Helper()
	p := &larder.Project{
		Name:     "test",
		Dir:      dir,
		Entities: []*larder.Entity{{Name: "user", Key: "user_id", KeyType: larder.TypeInt64}},
		Sources:  []*larder.Source{{Name: "events", Path: "data", EventTime: "ts"}},
		Views: []*larder.View{
			{Name: "agg", Kind: larder.KindAggregate, Entity: "user", Source: "events", Aggregations: randomAggregations(tb),
				NonFinite: larder.PolicyKeep},
			{Name: "lat", Kind: larder.KindLatest, Entity: "user", Source: "events", MaxAge: 20 * time.Second, NonFinite: larder.PolicyKeep,
				Features: []larder.Feature{
					feature("i64", larder.TypeInt64, "i64"), feature("f64", larder.TypeFloat64, "f64"),
					feature("s", larder.TypeString, "s"), feature("b", larder.TypeBool, "b"),
				}},
		},
	}
	p.SetDefaults()
	if err := p.Validate(); err != nil {
		tb.Fatalf("invalid test project: %v", err)
	}
	return p
}

// TestExportMatchesBruteForce compares every exported value with a
// brute-force reference computed per spine row: random rows in several
// files, out of order, with nulls, ties on event time and rows after the
// spine's times; spine times on window edges, before and after the rows,
// with null keys and keys without rows; joined in chunks smaller than the
// spine, read by 1 to 3 parallel workers.
func TestExportMatchesBruteForce(t *testing.T) {
	runTime := baseTime.Add(time.Hour)
	for _, procs := range []int{1, 3} {
		t.Run(fmt.Sprintf("procs=%d", procs), func(t *testing.T) {
			withProcs(t, procs)
			rng := rand.New(rand.NewPCG(uint64(procs), 13))
			dir := t.TempDir()
			var events []event
			var records []record
			for i := range 4 {
				rows := randomRows(rng, 800+rng.IntN(500), 60, runTime)
				// Written in reverse name order, read in name order.
				writeParquet(t, filepath.Join(dir, "data", fmt.Sprintf("part-%d.parquet", 3-i)), rows, smallGroups(int64(100+rng.IntN(200)))...)
				var evs []event
				var recs []record
				for j := range rows {
					e := rows[j].event()
					evs = append(evs, e)
					recs = append(recs, record{key: e.key, ts: e.ts, values: []larder.Value{e.cols["i64"], e.cols["f64"], e.cols["s"], e.cols["b"]}})
				}
				events, records = append(evs, events...), append(recs, records...)
			}
			// Spine times: the run time, its window edges (and a
			// microsecond off them), whole seconds (which tie with rows)
			// and instants after every row.
			edges := []time.Duration{0, 10 * time.Second, 30 * time.Second, time.Minute, 2 * time.Minute, 5 * time.Minute}
			var spine []spineRow
			for i := range 700 {
				var at time.Time
				switch r := rng.IntN(10); {
				case r < 4:
					at = runTime.Add(-edges[rng.IntN(len(edges))] + time.Duration(rng.IntN(3)-1)*time.Microsecond)
				case r < 8:
					at = runTime.Add(-time.Duration(rng.IntN(400)) * time.Second)
				default:
					at = runTime.Add(time.Duration(rng.IntN(30)) * time.Second)
				}
				row := spineRow{UserID: maybe(rng, 0.05, int64(rng.IntN(70))-3), At: at, Label: int64(i)}
				spine = append(spine, row)
			}
			writeParquet(t, filepath.Join(dir, "spine.parquet"), spine, smallGroups(97)...)
			p := exportProject(t, dir)
			m := materializer.New(p, nopStore{}, materializer.Options{Now: fixedClock(runTime)})
			out := filepath.Join(dir, "train.parquet")
			rep, err := m.Export(context.Background(), materializer.ExportArgs{
				Spine: "spine.parquet", Output: out, Timestamp: "at", Features: []string{"agg:*", "lat:*"}, ChunkRows: 250,
			})
			if err != nil {
				t.Fatal(err)
			}
			if rep.SpineRows != int64(len(spine)) || rep.Chunks < 3 {
				t.Errorf("report = %+v, want %d spine rows in 3 chunks or more", rep, len(spine))
			}
			got := readExport(t, out)
			if len(got) != len(spine) {
				t.Fatalf("%d rows exported, want %d", len(got), len(spine))
			}
			agg, lat := p.View("agg"), p.View("lat")
			diffs := 0
			fail := func(format string, args ...any) {
				if diffs < 10 {
					t.Errorf(format, args...)
				}
				diffs++
			}
			for i, s := range spine {
				row := got[i]
				if row["label"].Int64() != s.Label || row["at"].Int64() != s.At.UnixMicro() {
					fail("row %d: spine columns %v, want label %d", i, row, s.Label)
				}
				var wantAgg, wantLat larder.Row
				var hasAgg, hasLat bool
				if s.UserID != nil {
					k := larder.Int64Key(*s.UserID)
					var mine []event
					var recs []record
					for j, e := range events {
						if e.key != nil && *e.key == k {
							mine = append(mine, e)
							recs = append(recs, records[j])
						}
					}
					aggRows, _ := bruteAggregate(agg, mine, s.At)
					wantAgg, hasAgg = aggRows[k]
					latRows, _ := bruteLatest(recs, s.At)
					wantLat, hasLat = latRows[k]
				}
				status := "missing"
				if hasLat {
					status = "present"
					if s.At.Sub(wantLat.EventTime) > lat.MaxAge {
						status, hasLat = "stale", false
					}
				}
				if g := string(row["lat:status"].ByteArray()); g != status {
					fail("row %d (key %v at %v): lat:status %q, want %q", i, s.UserID, s.At, g, status)
				}
				for _, c := range []struct {
					v    *larder.View
					has  bool
					want larder.Row
				}{{agg, hasAgg, wantAgg}, {lat, hasLat, wantLat}} {
					for f, feat := range c.v.Features {
						w := larder.Null
						if c.has {
							w = c.want.Values[f]
						}
						col := c.v.Name + ":" + feat.Name
						if g := materializer.CellValue(feat.Type, []parquet.Value{row[col]}); !g.Equal(w) {
							fail("row %d (key %v at %v): %s = %v, want %v", i, s.UserID, s.At, col, g, w)
						}
					}
				}
			}
			if diffs > 10 {
				t.Errorf("... and %d more differences", diffs-10)
			}
		})
	}
}

// TestExportErrors checks that bad arguments are refused with the field
// named.
func TestExportErrors(t *testing.T) {
	dir := t.TempDir()
	writeParquet(t, filepath.Join(dir, "data", "part-0.parquet"), randomRows(rand.New(rand.NewPCG(1, 1)), 10, 3, baseTime), smallGroups(5)...)
	writeParquet(t, filepath.Join(dir, "spine.parquet"), []spineRow{{UserID: ptr(int64(1)), At: baseTime}})
	p := exportProject(t, dir)
	m := materializer.New(p, nopStore{}, materializer.Options{})
	base := materializer.ExportArgs{Spine: "spine.parquet", Output: filepath.Join(dir, "out.parquet"), Timestamp: "at", Features: []string{"lat:*"}}
	for _, c := range []struct {
		name string
		edit func(*materializer.ExportArgs)
		want string
	}{
		{"no spine", func(a *materializer.ExportArgs) { a.Spine = "" }, "no spine"},
		{"no timestamp", func(a *materializer.ExportArgs) { a.Timestamp = "" }, "no timestamp column"},
		{"bad ref", func(a *materializer.ExportArgs) { a.Features = []string{"lat"} }, `feature "lat": want view:feature or view:*`},
		{"unknown view", func(a *materializer.ExportArgs) { a.Features = []string{"nope:x"} }, `no view "nope"`},
		{"unknown feature", func(a *materializer.ExportArgs) { a.Features = []string{"lat:nope"} }, `view lat has no feature "nope"`},
		{"misspelt view", func(a *materializer.ExportArgs) { a.Features = []string{"latt:i64"} }, `no view "latt"; did you mean "lat"? (views: agg, lat)`},
		{"misspelt feature", func(a *materializer.ExportArgs) { a.Features = []string{"lat:i46"} }, `view lat has no feature "i46"; did you mean "i64"? (features: i64, f64, s, b)`},
		{"unknown ranker", func(a *materializer.ExportArgs) { a.Ranker = "nope" }, `unknown ranker "nope"`},
		{"missing column", func(a *materializer.ExportArgs) { a.Timestamp = "ts" }, `no column "ts"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := base
			c.edit(&args)
			_, err := m.Export(context.Background(), args)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want one saying %q", err, c.want)
			}
		})
	}
}

// TestExportOutputNotAnInput checks that an export refuses to write over a
// file of its spine, or over or among a source's files, and leaves them as
// they were.
func TestExportOutputNotAnInput(t *testing.T) {
	dir := t.TempDir()
	source := filepath.Join(dir, "data", "part-0.parquet")
	writeParquet(t, source, randomRows(rand.New(rand.NewPCG(1, 1)), 10, 3, baseTime), smallGroups(5)...)
	for _, name := range []string{"a.parquet", "b.parquet"} {
		writeParquet(t, filepath.Join(dir, "spine", name), []spineRow{{UserID: ptr(int64(1)), At: baseTime}})
	}
	p := exportProject(t, dir)
	p.Sources = append(p.Sources, &larder.Source{Name: "more", Path: "more/*.parquet", EventTime: "ts"},
		&larder.Source{Name: "odd", Path: "odd[1].parquet", EventTime: "ts"})
	writeParquet(t, filepath.Join(dir, "odd[1].parquet"), randomRows(rand.New(rand.NewPCG(1, 1)), 10, 3, baseTime))
	if err := os.Mkdir(filepath.Join(dir, "more"), 0o755); err != nil {
		t.Fatal(err)
	}
	// The project file and a model, which an export does not read but
	// must not overwrite.
	p.File = filepath.Join(dir, "larder.yaml")
	p.Rankers = append(p.Rankers, &larder.Ranker{Name: "feed", Model: "models/feed.onnx"})
	for _, f := range []string{p.File, filepath.Join(dir, "models", "feed.onnx")} {
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, []byte("kept"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m := materializer.New(p, nopStore{}, materializer.Options{})
	for _, c := range []struct {
		name, spine, output, want string
	}{
		{"the project file", "spine", "larder.yaml", "is the project file"},
		{"a ranker's model", "spine", "models/feed.onnx", `is the model of ranker "feed"`},
		{"a spine file of its folder", "spine", "spine/b.parquet", "is one of the spine's files"},
		{"a spine file of its glob", "spine/*.parquet", "spine/a.parquet", "is one of the spine's files"},
		{"a new file in the spine's folder", "spine", "spine/c.parquet", "the spine's folder or glob would read it"},
		{"a source's file", "spine", "data/part-0.parquet", `source "events"`},
		{"a new file in a source's folder", "spine", "data/part-1.parquet", `source "events"`},
		{"a file a source's glob matches", "spine", "more/x.parquet", `source "more"`},
		{"a source's file named like a glob", "spine", "odd[1].parquet", `source "odd"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			output := filepath.Join(dir, c.output)
			before, _ := os.ReadFile(output)
			_, err := m.Export(context.Background(), materializer.ExportArgs{
				Spine: c.spine, Output: output, Timestamp: "at", Features: []string{"lat:*"},
			})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want one saying %q", err, c.want)
			}
			after, _ := os.ReadFile(output)
			if !bytes.Equal(before, after) {
				t.Errorf("%s changed", c.output)
			}
		})
	}
}

// TestExportCorruptSpineNamed corrupts each byte of a spine's footer in
// turn and checks that every export either succeeds or fails with an error
// naming the spine file, a panic of the Parquet library on a malformed
// page included.
func TestExportCorruptSpineNamed(t *testing.T) {
	dir := t.TempDir()
	writeParquet(t, filepath.Join(dir, "data", "part-0.parquet"), randomRows(rand.New(rand.NewPCG(1, 1)), 10, 3, baseTime))
	good := filepath.Join(dir, "good.parquet")
	var rows []spineRow
	for i := range 20 {
		rows = append(rows, spineRow{UserID: ptr(int64(i % 4)), At: baseTime, Label: int64(i) * 1000003})
	}
	writeParquet(t, good, rows, parquet.PageBufferSize(64))
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	pf, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	// The pages' data is under checksums: the footer, which is not, is
	// where a corrupt byte goes unseen until a page is read.
	lo, hi := int64(0), int64(len(data)-8)
	for _, rg := range pf.Metadata().RowGroups {
		for _, c := range rg.Columns {
			lo = max(lo, c.MetaData.DataPageOffset+c.MetaData.TotalCompressedSize)
		}
	}
	p := exportProject(t, dir)
	m := materializer.New(p, nopStore{}, materializer.Options{})
	spine := filepath.Join(dir, "spine.parquet")
	for i := lo; i < hi; i++ {
		for _, b := range []byte{0x00, 0x9d} {
			if data[i] == b {
				continue
			}
			bad := bytes.Clone(data)
			bad[i] = b
			if err := os.WriteFile(spine, bad, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := m.Export(context.Background(), materializer.ExportArgs{
				Spine: spine, Output: filepath.Join(dir, "out.parquet"), Timestamp: "at", Features: []string{"lat:*"},
			})
			if err != nil && !strings.Contains(err.Error(), spine) {
				t.Errorf("byte %d set to %#x: %v, which does not name the spine file", i, b, err)
			}
		}
	}
}

// TestExportOutputNotAFile checks that an output that is there and is not
// a file (a named pipe, such as /dev/stdout can be) is refused, not
// replaced by the file the export renames over it.
func TestExportOutputNotAFile(t *testing.T) {
	dir := t.TempDir()
	writeParquet(t, filepath.Join(dir, "data", "part-0.parquet"), randomRows(rand.New(rand.NewPCG(1, 1)), 10, 3, baseTime))
	writeParquet(t, filepath.Join(dir, "spine.parquet"), []spineRow{{UserID: ptr(int64(1)), At: baseTime}})
	fifo := filepath.Join(dir, "pipe")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(fifo, link); err != nil {
		t.Fatal(err)
	}
	outputs := []string{fifo, link}
	// /dev/stdout when the standard output is a pipe: a link to
	// /proc/self/fd/N, itself a link the kernel resolves to the pipe, not
	// to a file whose name is its text ("pipe:[NNN]").
	if _, err := os.Stat("/proc/self/fd"); err == nil {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		defer w.Close()
		stdout := filepath.Join(dir, "stdout")
		if err := os.Symlink(fmt.Sprintf("/proc/self/fd/%d", w.Fd()), stdout); err != nil {
			t.Fatal(err)
		}
		outputs = append(outputs, stdout)
	}
	m := materializer.New(exportProject(t, dir), nopStore{}, materializer.Options{})
	for _, output := range outputs {
		_, err := m.Export(context.Background(), materializer.ExportArgs{
			Spine: "spine.parquet", Output: output, Timestamp: "at", Features: []string{"lat:*"},
		})
		if want := "is not a regular file"; err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("output %s: err = %v, want one saying %q", output, err, want)
		}
		if fi, err := os.Lstat(output); err != nil || fi.Mode().IsRegular() {
			t.Errorf("output %s: replaced by a file (%v)", output, err)
		}
	}
}

// TestExportSpineRowCountLies exports a spine whose footer claims far more
// rows than its pages hold: the export fails naming the file, rather than
// running out of memory for the rows claimed.
func TestExportSpineRowCountLies(t *testing.T) {
	dir := t.TempDir()
	writeParquet(t, filepath.Join(dir, "data", "part-0.parquet"), randomRows(rand.New(rand.NewPCG(1, 1)), 10, 3, baseTime))
	spine := filepath.Join(dir, "spine.parquet")
	writeParquet(t, spine, []spineRow{{UserID: ptr(int64(1)), At: baseTime}, {UserID: ptr(int64(2)), At: baseTime}})
	data, err := os.ReadFile(spine)
	if err != nil {
		t.Fatal(err)
	}
	n := len(data)
	size := int(binary.LittleEndian.Uint32(data[n-8:]))
	var md format.FileMetaData
	if err := thrift.Unmarshal(new(thrift.CompactProtocol), data[n-8-size:n-8], &md); err != nil {
		t.Fatal(err)
	}
	md.NumRows = 1 << 40
	for i := range md.RowGroups {
		md.RowGroups[i].NumRows = 1 << 40
	}
	footer, err := thrift.Marshal(new(thrift.CompactProtocol), &md)
	if err != nil {
		t.Fatal(err)
	}
	lying := append(slices.Clone(data[:n-8-size]), footer...)
	lying = binary.LittleEndian.AppendUint32(lying, uint32(len(footer)))
	lying = append(lying, "PAR1"...)
	if err := os.WriteFile(spine, lying, 0o644); err != nil {
		t.Fatal(err)
	}
	m := materializer.New(exportProject(t, dir), nopStore{}, materializer.Options{})
	_, err = m.Export(context.Background(), materializer.ExportArgs{
		Spine: spine, Output: filepath.Join(dir, "out.parquet"), Timestamp: "at", Features: []string{"lat:*"},
	})
	if err == nil || !strings.Contains(err.Error(), spine) {
		t.Fatalf("err = %v, want one naming %s", err, spine)
	}
}

// TestExportProgressNamesChunks checks that the progress of an export of
// several chunks says which chunk each source is read for, so that the
// readings that start over at each chunk are told apart.
func TestExportProgressNamesChunks(t *testing.T) {
	dir := t.TempDir()
	writeParquet(t, filepath.Join(dir, "data", "part-0.parquet"), randomRows(rand.New(rand.NewPCG(1, 1)), 10, 3, baseTime))
	var spine []spineRow
	for i := range 4 {
		spine = append(spine, spineRow{UserID: ptr(int64(i)), At: baseTime})
	}
	writeParquet(t, filepath.Join(dir, "spine.parquet"), spine, smallGroups(2)...)
	var mu sync.Mutex
	phases := map[string]bool{}
	m := materializer.New(exportProject(t, dir), nopStore{}, materializer.Options{Progress: func(p materializer.Progress) {
		mu.Lock()
		defer mu.Unlock()
		phases[p.Phase] = true
	}})
	if _, err := m.Export(context.Background(), materializer.ExportArgs{
		Spine: "spine.parquet", Output: filepath.Join(dir, "out.parquet"), Timestamp: "at", Features: []string{"lat:*"}, ChunkRows: 2,
	}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"chunk 1/2: reading lat", "chunk 2/2: reading lat"} {
		if !phases[want] {
			t.Errorf("no progress in phase %q; phases: %v", want, phases)
		}
	}
}

// TestExportSpineFilesDiffer checks that spine files whose columns differ
// are refused with the difference named.
func TestExportSpineFilesDiffer(t *testing.T) {
	type reordered struct {
		Label  int64     `parquet:"label"`
		UserID *int64    `parquet:"user_id,optional"`
		At     time.Time `parquet:"at,timestamp(microsecond)"`
	}
	type required struct {
		UserID int64     `parquet:"user_id"`
		At     time.Time `parquet:"at,timestamp(microsecond)"`
		Label  int64     `parquet:"label"`
	}
	type fewer struct {
		UserID *int64    `parquet:"user_id,optional"`
		At     time.Time `parquet:"at,timestamp(microsecond)"`
	}
	type typed struct {
		UserID *int64    `parquet:"user_id,optional"`
		At     time.Time `parquet:"at,timestamp(microsecond)"`
		Label  string    `parquet:"label"`
	}
	dir := t.TempDir()
	writeParquet(t, filepath.Join(dir, "data", "part-0.parquet"), randomRows(rand.New(rand.NewPCG(1, 1)), 10, 3, baseTime))
	m := materializer.New(exportProject(t, dir), nopStore{}, materializer.Options{})
	for _, c := range []struct {
		name  string
		write func(path string)
		want  string
	}{
		{"order", func(p string) { writeParquet(t, p, []reordered{{UserID: ptr(int64(1)), At: baseTime}}) },
			"has the same columns in another order: label, user_id, at (a.parquet: user_id, at, label)"},
		{"required", func(p string) { writeParquet(t, p, []required{{UserID: 1, At: baseTime}}) },
			`column "user_id" is required there, optional in a.parquet`},
		{"fewer", func(p string) { writeParquet(t, p, []fewer{{UserID: ptr(int64(1)), At: baseTime}}) },
			`has no column "label", which a.parquet has`},
		{"type", func(p string) { writeParquet(t, p, []typed{{UserID: ptr(int64(1)), At: baseTime}}) },
			`column "label" is BYTE_ARRAY STRING there, INT64 in a.parquet`},
	} {
		t.Run(c.name, func(t *testing.T) {
			spine := filepath.Join(dir, c.name)
			writeParquet(t, filepath.Join(spine, "a.parquet"), []spineRow{{UserID: ptr(int64(1)), At: baseTime}})
			c.write(filepath.Join(spine, "b.parquet"))
			_, err := m.Export(context.Background(), materializer.ExportArgs{
				Spine: spine, Output: filepath.Join(dir, "out.parquet"), Timestamp: "at", Features: []string{"lat:*"},
			})
			want := "spine file " + filepath.Join(spine, "b.parquet") + " " + c.want
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("err = %v, want one saying %q", err, want)
			}
		})
	}
}

// TestExportConcurrentSameOutput runs an export while another of the same
// output is reading its sources: the one that ends first must not take the
// other's temporary file for one left by a killed export and remove it.
func TestExportConcurrentSameOutput(t *testing.T) {
	dir := t.TempDir()
	writeParquet(t, filepath.Join(dir, "data", "part-0.parquet"), randomRows(rand.New(rand.NewPCG(1, 1)), 10, 3, baseTime))
	writeParquet(t, filepath.Join(dir, "spine.parquet"), []spineRow{{UserID: ptr(int64(1)), At: baseTime}})
	p := exportProject(t, dir)
	args := materializer.ExportArgs{Spine: "spine.parquet", Output: filepath.Join(dir, "out.parquet"), Timestamp: "at", Features: []string{"lat:*"}}
	reading, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	slow := materializer.New(p, nopStore{}, materializer.Options{Progress: func(pr materializer.Progress) {
		if strings.HasPrefix(pr.Phase, "reading") {
			once.Do(func() {
				close(reading)
				<-release
			})
		}
	}})
	done := make(chan error, 1)
	go func() {
		_, err := slow.Export(context.Background(), args)
		done <- err
	}()
	<-reading
	if _, err := materializer.New(p, nopStore{}, materializer.Options{}).Export(context.Background(), args); err != nil {
		t.Fatalf("the export that ends first: %v", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("the export that ends last: %v", err)
	}
}

// TestExportSpineNameLikeGlob exports a spine file whose name holds the
// characters of a glob: the file that is there is read, not taken for a
// pattern that matches nothing.
func TestExportSpineNameLikeGlob(t *testing.T) {
	dir := t.TempDir()
	writeParquet(t, filepath.Join(dir, "data", "part-0.parquet"), randomRows(rand.New(rand.NewPCG(1, 1)), 10, 3, baseTime))
	writeParquet(t, filepath.Join(dir, "spine[1].parquet"), []spineRow{{UserID: ptr(int64(1)), At: baseTime}})
	m := materializer.New(exportProject(t, dir), nopStore{}, materializer.Options{})
	rep, err := m.Export(context.Background(), materializer.ExportArgs{
		Spine: "spine[1].parquet", Output: filepath.Join(dir, "out.parquet"), Timestamp: "at", Features: []string{"lat:*"},
	})
	if err != nil || rep.SpineRows != 1 {
		t.Fatalf("Export: %d rows, %v; want 1 row", rep.SpineRows, err)
	}
}

// TestExportOutputNotAnInputThroughLink checks that an output named
// through a symbolic link to a source's folder is refused as a file that
// the source's glob would read, as it is when named directly.
func TestExportOutputNotAnInputThroughLink(t *testing.T) {
	dir := t.TempDir()
	writeParquet(t, filepath.Join(dir, "data", "part-0.parquet"), randomRows(rand.New(rand.NewPCG(1, 1)), 10, 3, baseTime))
	writeParquet(t, filepath.Join(dir, "spine.parquet"), []spineRow{{UserID: ptr(int64(1)), At: baseTime}})
	p := exportProject(t, dir)
	p.Sources = append(p.Sources, &larder.Source{Name: "more", Path: "more/*.parquet", EventTime: "ts"},
		&larder.Source{Name: "days", Path: "days/2024-*", EventTime: "ts"})
	for _, d := range []string{"more", "days/2024-01"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join(dir, "more"), filepath.Join(dir, "more-link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "days", "2024-01"), filepath.Join(dir, "january")); err != nil {
		t.Fatal(err)
	}
	m := materializer.New(p, nopStore{}, materializer.Options{})
	for _, c := range []struct{ output, want string }{
		{"more-link/x.parquet", `source "more"`},
		{"january/x.parquet", `source "days"`},
	} {
		t.Run(c.output, func(t *testing.T) {
			_, err := m.Export(context.Background(), materializer.ExportArgs{
				Spine: "spine.parquet", Output: filepath.Join(dir, c.output), Timestamp: "at", Features: []string{"lat:*"},
			})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want one saying %q", err, c.want)
			}
		})
	}
}
