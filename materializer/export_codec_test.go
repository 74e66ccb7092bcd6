package materializer_test

import (
	"cmp"
	"context"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/internal/parquettest"
	"github.com/larder-dev/larder/materializer"
)

// codecSpineRow is a spine row whose columns have codecs of their own, one
// of them nested.
type codecSpineRow struct {
	UserID *int64     `parquet:"user_id,optional,snappy"`
	At     time.Time  `parquet:"at,timestamp(microsecond),zstd"`
	Label  int64      `parquet:"label,gzip"`
	Note   string     `parquet:"note"`
	Meta   *codecMeta `parquet:"meta,optional"`
}

type codecMeta struct {
	Source string `parquet:"source,snappy"`
}

// codecSpineCodecs are the codecs of codecSpineRow's columns, which the
// export keeps.
var codecSpineCodecs = map[string]format.CompressionCodec{
	"user_id": format.Snappy, "at": format.Zstd, "label": format.Gzip, "note": format.Uncompressed, "meta.source": format.Snappy,
}

// TestExportCompression exports every type a latest view stores, with its
// statuses, with each value of ExportArgs.Compression, and checks the codec
// of every column chunk of the output: the added columns (a list's element
// included) in the codec asked for, Snappy by default, and the spine's
// columns in their own. The values are the same whatever the codec.
func TestExportCompression(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 13))
	dir := t.TempDir()
	writeParquet(t, filepath.Join(dir, "data", "part-0.parquet"), randomAllTypes(rng, 600, 50, 60), smallGroups(200)...)
	p := projectFor(t, dir, "data", larder.TypeInt64, allTypesFeatures...)
	m := materializer.New(p, nopStore{}, materializer.Options{})
	var spine []codecSpineRow
	for id := int64(-2); id < 58; id++ {
		row := codecSpineRow{UserID: ptr(id), At: baseTime.Add(time.Duration(id) * time.Second), Label: id % 2, Note: "n"}
		if id%3 == 0 {
			row.Meta = &codecMeta{Source: "web"}
		}
		spine = append(spine, row)
	}
	writeParquet(t, filepath.Join(dir, "spine.parquet"), spine, parquet.MaxRowsPerRowGroup(25))

	var ref []map[string][]parquet.Value
	for _, tt := range []struct {
		compression string
		want        format.CompressionCodec
	}{
		{"", format.Snappy},
		{materializer.CompressionSnappy, format.Snappy},
		{materializer.CompressionZstd, format.Zstd},
		{materializer.CompressionNone, format.Uncompressed},
	} {
		name := cmp.Or(tt.compression, "default")
		out := filepath.Join(dir, "train-"+name+".parquet")
		rep, err := m.Export(context.Background(), materializer.ExportArgs{
			Spine: "spine.parquet", Output: out, Timestamp: "at", Features: []string{"v:*"}, ChunkRows: 25, Compression: tt.compression,
		})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		pf := parquettest.Open(t, out)
		groups := pf.Metadata().RowGroups
		if len(groups) == 0 {
			t.Fatalf("%s: the output has no row group", name)
		}
		for g, rg := range groups {
			var added []string
			seen := map[string]bool{}
			for _, cc := range rg.Columns {
				col := strings.Join(cc.MetaData.PathInSchema, ".")
				want, ok := codecSpineCodecs[col]
				if ok {
					seen[col] = true
				} else {
					want = tt.want
					added = append(added, col)
				}
				if cc.MetaData.Codec != want {
					t.Errorf("%s: row group %d, column %s: codec %v, want %v", name, g, col, cc.MetaData.Codec, want)
				}
			}
			if len(seen) != len(codecSpineCodecs) {
				t.Errorf("%s: row group %d has the spine's columns %v, want those of %v", name, g, seen, codecSpineCodecs)
			}
			// One leaf per added column; a list's is its element.
			if len(added) != len(rep.Columns) || !slices.Contains(added, "v:vec.list.element") || !slices.Contains(added, "v:status") {
				t.Errorf("%s: row group %d: added columns %v, want the leaves of %v", name, g, added, rep.Columns)
			}
		}
		rows := readColumns(t, out)
		if len(rows) != len(spine) {
			t.Fatalf("%s: %d rows exported, want %d", name, len(rows), len(spine))
		}
		if ref == nil {
			ref = rows
			continue
		}
		for i := range rows {
			if !sameRow(rows[i], ref[i]) {
				t.Fatalf("%s: row %d is %v, with the default codec %v", name, i, rows[i], ref[i])
			}
		}
	}
}

// TestExportCompressionRefused checks that an unknown codec is refused
// with the accepted ones named, before the spine is read.
func TestExportCompressionRefused(t *testing.T) {
	dir := t.TempDir()
	p := projectFor(t, dir, "data", larder.TypeInt64, allTypesFeatures...)
	m := materializer.New(p, nopStore{}, materializer.Options{})
	_, err := m.Export(context.Background(), materializer.ExportArgs{
		Spine: "no-such-spine.parquet", Output: filepath.Join(dir, "out.parquet"), Timestamp: "at", Features: []string{"v:*"}, Compression: "lz4",
	})
	want := `export: unknown compression "lz4": want one of snappy, zstd, none`
	if err == nil || err.Error() != want || !larder.IsInvalid(err) {
		t.Fatalf("err = %v, want an invalid-argument error %q", err, want)
	}
}

// sameRow reports whether two rows read by readColumns hold the same
// values: kind, levels and bytes.
func sameRow(a, b map[string][]parquet.Value) bool {
	if len(a) != len(b) {
		return false
	}
	for col, vs := range a {
		ws := b[col]
		if len(vs) != len(ws) {
			return false
		}
		for i, v := range vs {
			w := ws[i]
			if v.Kind() != w.Kind() || v.DefinitionLevel() != w.DefinitionLevel() || v.RepetitionLevel() != w.RepetitionLevel() ||
				!slices.Equal(v.Bytes(), w.Bytes()) {
				return false
			}
		}
	}
	return true
}
