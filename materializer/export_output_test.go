package materializer_test

import (
	"context"
	"errors"
	"io"
	"math"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/internal/parquettest"
	"github.com/larder-dev/larder/materializer"
)

// listSpineRow is a spine row with a repeated column and a nested one.
type listSpineRow struct {
	UserID *int64     `parquet:"user_id,optional"`
	At     time.Time  `parquet:"at,timestamp(microsecond)"`
	Tags   []string   `parquet:"tags"`
	Meta   *spineMeta `parquet:"meta,optional"`
	Label  int64      `parquet:"label"`
}

// nestedSpineRow is a spine row with a nested column and no repeated one.
type nestedSpineRow struct {
	UserID *int64     `parquet:"user_id,optional"`
	At     time.Time  `parquet:"at,timestamp(microsecond)"`
	Meta   *spineMeta `parquet:"meta,optional"`
	Label  int64      `parquet:"label"`
}

type spineMeta struct {
	Source string   `parquet:"source"`
	Score  *float64 `parquet:"score,optional"`
}

// exportRuleRow is a source row whose values the view's rules look at.
type exportRuleRow struct {
	UserID int64   `parquet:"user_id"`
	TS     int64   `parquet:"ts,timestamp(microsecond)"`
	F      float64 `parquet:"f"`
	S      string  `parquet:"s"`
	N      int64   `parquet:"n"`
}

// readColumns reads a Parquet file's rows, each a map from column name to
// the values of that column in the row (several for a repeated column).
func readColumns(tb testing.TB, path string) []map[string][]parquet.Value {
	tb.Helper()
	pf := parquettest.Open(tb, path)
	var names []string
	for _, c := range pf.Schema().Columns() {
		names = append(names, strings.Join(c, "."))
	}
	r := parquet.NewReader(pf)
	defer r.Close()
	var out []map[string][]parquet.Value
	rows := make([]parquet.Row, 50)
	for {
		n, err := r.ReadRows(rows)
		for _, row := range rows[:n] {
			m := map[string][]parquet.Value{}
			for _, v := range row {
				m[names[v.Column()]] = append(m[names[v.Column()]], v.Clone())
			}
			out = append(out, m)
		}
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			tb.Fatal(err)
		}
	}
}

// rulesProject is a project of one latest view over data/ whose value rules
// null or reject (policy) NaNs and strings over 8 bytes.
func rulesProject(tb testing.TB, dir string, policy larder.ValuePolicy) *larder.Project {
	tb.Helper()
	p := &larder.Project{
		Name:     "test",
		Dir:      dir,
		Entities: []*larder.Entity{{Name: "user", Key: "user_id", KeyType: larder.TypeInt64}},
		Sources:  []*larder.Source{{Name: "events", Path: "data", EventTime: "ts"}},
		Views: []*larder.View{{
			Name: "lat", Kind: larder.KindLatest, Entity: "user", Source: "events",
			NonFinite: policy, Oversize: policy, MaxValueBytes: 8,
			Features: []larder.Feature{feature("f", larder.TypeFloat64, "f"), feature("s", larder.TypeString, "s"), feature("n", larder.TypeInt64, "n")},
		}},
	}
	p.SetDefaults()
	if err := p.Validate(); err != nil {
		tb.Fatalf("invalid test project: %v", err)
	}
	return p
}

// TestExportSpineColumnsAndRules checks that a spine with repeated and
// nested columns is copied as it is, row for row, across chunks and row
// groups, and that the view's value rules null the values they refuse
// (counted as "rules") or fail the export naming the value, whichever row
// of a block they are in.
func TestExportSpineColumnsAndRules(t *testing.T) {
	dir := t.TempDir()
	var src []exportRuleRow
	for k := range int64(40) {
		for i := range int64(3) {
			r := exportRuleRow{UserID: k, TS: baseTime.Add(time.Duration(i) * time.Minute).UnixMicro(), F: float64(k) + float64(i)/4, S: "ok", N: k * i}
			if k%7 == 3 && i == 2 {
				r.F = math.NaN()
			}
			if k%11 == 5 && i == 2 {
				r.S = "much too long"
			}
			src = append(src, r)
		}
	}
	writeParquet(t, filepath.Join(dir, "data", "part-0.parquet"), src, smallGroups(17)...)
	var spine []listSpineRow
	for i := range 5000 {
		row := listSpineRow{At: baseTime.Add(time.Duration(i%300) * time.Second), Label: int64(i)}
		if i%13 != 0 {
			row.UserID = ptr(int64(i % 45))
		}
		for j := range i % 4 {
			row.Tags = append(row.Tags, strings.Repeat("t", j+1))
		}
		if i%5 != 0 {
			row.Meta = &spineMeta{Source: "s" + string(rune('a'+i%3))}
			if i%3 == 0 {
				row.Meta.Score = ptr(float64(i) / 8)
			}
		}
		spine = append(spine, row)
	}
	writeParquet(t, filepath.Join(dir, "spine.parquet"), spine, smallGroups(333)...)

	p := rulesProject(t, dir, larder.PolicyNull)
	m := materializer.New(p, nopStore{}, materializer.Options{})
	out := filepath.Join(dir, "train.parquet")
	rep, err := m.Export(context.Background(), materializer.ExportArgs{Spine: "spine.parquet", Output: out, Timestamp: "at", Features: []string{"lat:*"}, ChunkRows: 1000})
	if err != nil {
		t.Fatal(err)
	}
	got := readColumns(t, out)
	if len(got) != len(spine) {
		t.Fatalf("%d rows, want %d", len(got), len(spine))
	}
	nan, long := 0, 0
	for i, s := range spine {
		row := got[i]
		var tags []string
		for _, v := range row["tags"] {
			if !v.IsNull() {
				tags = append(tags, string(v.ByteArray()))
			}
		}
		if !slices.Equal(tags, s.Tags) || row["label"][0].Int64() != s.Label {
			t.Fatalf("row %d: tags %q label %v, want %q %d", i, tags, row["label"], s.Tags, s.Label)
		}
		src, score := row["meta.source"][0], row["meta.score"][0]
		switch {
		case s.Meta == nil && (!src.IsNull() || !score.IsNull()):
			t.Fatalf("row %d: meta %v %v, want null", i, src, score)
		case s.Meta != nil && string(src.ByteArray()) != s.Meta.Source:
			t.Fatalf("row %d: meta.source %v, want %q", i, src, s.Meta.Source)
		case s.Meta != nil && s.Meta.Score != nil && score.Double() != *s.Meta.Score:
			t.Fatalf("row %d: meta.score %v, want %v", i, score, *s.Meta.Score)
		case s.Meta != nil && s.Meta.Score == nil && !score.IsNull():
			t.Fatalf("row %d: meta.score %v, want null", i, score)
		}
		if s.UserID == nil || *s.UserID >= 40 {
			continue
		}
		k := *s.UserID
		last := int64(s.At.Sub(baseTime) / time.Minute)
		if last > 2 {
			last = 2
		}
		wantF := larder.Float64Value(float64(k) + float64(last)/4)
		wantS := larder.StringValue("ok")
		if k%7 == 3 && last == 2 {
			wantF = larder.Null
			nan++
		}
		if k%11 == 5 && last == 2 {
			wantS = larder.Null
			long++
		}
		if g := materializer.CellValue(larder.TypeFloat64, row["lat:f"]); !g.Equal(wantF) {
			t.Errorf("row %d (key %d at %v): lat:f = %v, want %v", i, k, s.At, g, wantF)
		}
		if g := materializer.CellValue(larder.TypeString, row["lat:s"]); !g.Equal(wantS) {
			t.Errorf("row %d (key %d at %v): lat:s = %v, want %v", i, k, s.At, g, wantS)
		}
		if g := row["lat:n"][0].Int64(); g != k*last {
			t.Errorf("row %d: lat:n = %d, want %d", i, g, k*last)
		}
	}
	if nan == 0 || long == 0 {
		t.Fatalf("%d NaNs and %d long strings exported: the test checks too little", nan, long)
	}
	if g := rep.Nulls["lat:f"][materializer.NullRules]; g != int64(nan) {
		t.Errorf("lat:f nulled by the rules %d times, want %d (%v)", g, nan, rep.Nulls["lat:f"])
	}
	if g := rep.Nulls["lat:s"][materializer.NullRules]; g != int64(long) {
		t.Errorf("lat:s nulled by the rules %d times, want %d (%v)", g, long, rep.Nulls["lat:s"])
	}

	// A spine without repeated columns is copied column by column.
	nested := make([]nestedSpineRow, len(spine))
	for i, s := range spine {
		nested[i] = nestedSpineRow{UserID: s.UserID, At: s.At, Meta: s.Meta, Label: s.Label}
	}
	writeParquet(t, filepath.Join(dir, "nested.parquet"), nested, smallGroups(333)...)
	rep2, err := m.Export(context.Background(), materializer.ExportArgs{Spine: "nested.parquet", Output: out, Timestamp: "at", Features: []string{"lat:*"}, ChunkRows: 1000})
	if err != nil {
		t.Fatal(err)
	}
	flat := readColumns(t, out)
	for i := range spine {
		for _, c := range []string{"user_id", "at", "label", "meta.source", "meta.score", "lat:f", "lat:s", "lat:n", "lat:status"} {
			a, b := got[i][c][0], flat[i][c][0]
			if a.IsNull() != b.IsNull() || a.DefinitionLevel() != b.DefinitionLevel() || string(a.Bytes()) != string(b.Bytes()) {
				t.Fatalf("row %d: %s = %v without lists, %v with", i, c, b, a)
			}
		}
	}
	if !reflect.DeepEqual(rep.Nulls, rep2.Nulls) {
		t.Errorf("nulls %v without lists, %v with", rep2.Nulls, rep.Nulls)
	}

	// Under reject, the first value refused fails the export: that of the
	// first spine row that has one.
	p = rulesProject(t, dir, larder.PolicyReject)
	m = materializer.New(p, nopStore{}, materializer.Options{})
	_, err = m.Export(context.Background(), materializer.ExportArgs{Spine: "spine.parquet", Output: out, Timestamp: "at", Features: []string{"lat:n"}, ChunkRows: 1000})
	var ve *materializer.ValueError
	if !errors.As(err, &ve) {
		t.Fatalf("err = %v, want a *ValueError", err)
	}
	first := -1
	for i, s := range spine {
		if s.UserID != nil && *s.UserID < 40 && s.At.Sub(baseTime) >= 2*time.Minute && (*s.UserID%7 == 3 || *s.UserID%11 == 5) {
			first = i
			break
		}
	}
	if want := larder.Int64Key(*spine[first].UserID); ve.Key != want {
		t.Errorf("refused the value of %v, want that of %v (spine row %d): %v", ve.Key, want, first, err)
	}
}
