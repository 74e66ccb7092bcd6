package store_test

import (
	"bytes"
	"encoding/hex"
	"math"
	"testing"
	"time"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/store"
)

// The vectors in this file pin the bytes the store keeps in Redis: the row
// codec (AppendRow and DecodeRow) and the bucket hash (bucketOf). The
// canonical key text and the schema fingerprint are pinned next to their
// code, in the root package's golden_test.go. Round trips cannot catch a
// change made on the encoding and the decoding side at once; these literal
// bytes can, and a rolling upgrade depends on them: readers of the old
// release read what writers of the new one wrote, and the other way round.
//
// Changing an expected value here is a storage format change. It needs a
// new codec version (codecVersion, which old readers refuse rather than
// misread), a migration note in the release notes and in
// docs/operations.md, and a new compatibility fixture (compat_test.go).
// Never edit a vector to make a failing test pass. A new type gets new
// vectors; the old ones stay.

// goldenAt is the event time of most golden rows: 2026-03-01T12:30:45.123456Z,
// 1772368245123456 unix microseconds.
var goldenAt = time.Date(2026, 3, 1, 12, 30, 45, 123456000, time.UTC)

var goldenRows = []struct {
	name  string
	types []larder.Type
	row   larder.Row
	hex   string
}{
	{
		// 01: codec version; 80a6cbbab4fda506: the event time (zigzag
		// varint); 0000: no null; then -42 (53), 3.25, -1.5, true, "héllo",
		// 00 01 ff, [1 -2 0.5], [7 -1 300], ["a" "" "é"].
		"every type", allTypes,
		larder.Row{EventTime: goldenAt, Values: []larder.Value{
			larder.Int64Value(-42), larder.Float64Value(3.25), larder.Float32Value(-1.5), larder.BoolValue(true),
			larder.StringValue("héllo"), larder.BytesValue([]byte{0, 1, 0xff}), larder.Float32VectorValue([]float32{1, -2, 0.5}),
			larder.Int64ListValue([]int64{7, -1, 300}), larder.StringListValue([]string{"a", "", "é"}),
		}},
		"0180a6cbbab4fda506" + "0000" + "53" + "0000000000000a40" + "0000c0bf" + "01" + "0668c3a96c6c6f" + "030001ff" +
			"03" + "0000803f" + "000000c0" + "0000003f" + "03" + "0e" + "01" + "d804" + "03" + "0161" + "00" + "02c3a9",
	},
	{
		// Nine nulls: a bitmap of two bytes, ff 01, and nothing after it.
		"all null", allTypes,
		larder.Row{EventTime: goldenAt, Values: make([]larder.Value, len(allTypes))},
		"0180a6cbbab4fda506" + "ff01",
	},
	{
		// Nulls at 0, 2, 4, 5 and 7 (bitmap b5 00); an empty vector and an
		// empty list are values, a count of 0.
		"some null", allTypes,
		larder.Row{EventTime: goldenAt, Values: []larder.Value{
			larder.Null, larder.Float64Value(1), larder.Null, larder.BoolValue(false), larder.Null, larder.Null,
			larder.Float32VectorValue([]float32{}), larder.Null, larder.StringListValue([]string{}),
		}},
		"0180a6cbbab4fda506" + "b500" + "000000000000f03f" + "00" + "00" + "00",
	},
	{
		// The zero time is kept as its own microsecond count,
		// -62135596800000000.
		"zero event time", []larder.Type{larder.TypeBool},
		larder.Row{Values: []larder.Value{larder.BoolValue(true)}},
		"01ffffddf2dfffdfdc01" + "00" + "01",
	},
	{
		"event time before 1970", []larder.Type{larder.TypeBool},
		larder.Row{EventTime: time.Date(1901, 1, 1, 0, 0, 0, 1000, time.UTC), Values: []larder.Value{larder.Null}},
		"01fdffc5cab798de07" + "01",
	},
	{
		"unix epoch, no features", nil,
		larder.Row{EventTime: time.Unix(0, 0).UTC()},
		"0100",
	},
	{
		"nine int64 features", []larder.Type{
			larder.TypeInt64, larder.TypeInt64, larder.TypeInt64, larder.TypeInt64, larder.TypeInt64,
			larder.TypeInt64, larder.TypeInt64, larder.TypeInt64, larder.TypeInt64},
		larder.Row{EventTime: goldenAt, Values: []larder.Value{
			larder.Int64Value(1), larder.Null, larder.Int64Value(3), larder.Null, larder.Int64Value(5),
			larder.Null, larder.Int64Value(7), larder.Null, larder.Null}},
		"0180a6cbbab4fda506" + "aa01" + "02" + "06" + "0a" + "0e",
	},
	{
		"int64 extremes", []larder.Type{larder.TypeInt64, larder.TypeInt64, larder.TypeInt64},
		larder.Row{EventTime: goldenAt, Values: []larder.Value{larder.Int64Value(math.MinInt64), larder.Int64Value(math.MaxInt64), larder.Int64Value(0)}},
		"0180a6cbbab4fda506" + "00" + "ffffffffffffffffff01" + "feffffffffffffffff01" + "00",
	},
	{
		"float extremes", []larder.Type{larder.TypeFloat64, larder.TypeFloat64, larder.TypeFloat64, larder.TypeFloat64, larder.TypeFloat64, larder.TypeFloat32},
		larder.Row{EventTime: goldenAt, Values: []larder.Value{
			larder.Float64Value(math.Inf(1)), larder.Float64Value(math.Inf(-1)), larder.Float64Value(math.Copysign(0, -1)),
			larder.Float64Value(math.MaxFloat64), larder.Float64Value(math.SmallestNonzeroFloat64), larder.Float32Value(float32(math.Inf(1))),
		}},
		"0180a6cbbab4fda506" + "00" + "000000000000f07f" + "000000000000f0ff" + "0000000000000080" +
			"ffffffffffffef7f" + "0100000000000000" + "0000807f",
	},
}

// TestCodecGolden checks that AppendRow writes exactly the golden bytes and
// that DecodeRow reads them back as the row.
func TestCodecGolden(t *testing.T) {
	if store.CodecVersion != 1 {
		t.Fatalf("codec version %d: add golden rows of the new version, and keep those of version 1 for the readers that must refuse them", store.CodecVersion)
	}
	for _, tt := range goldenRows {
		t.Run(tt.name, func(t *testing.T) {
			want, err := hex.DecodeString(tt.hex)
			if err != nil {
				t.Fatal(err)
			}
			got, err := store.AppendRow([]byte("prefix"), tt.types, tt.row)
			if err != nil {
				t.Fatal(err)
			}
			if got = got[len("prefix"):]; !bytes.Equal(got, want) {
				t.Errorf("AppendRow = %x\n          want %x", got, want)
			}

			var row larder.Row
			if err := store.DecodeRow(want, tt.types, &row); err != nil {
				t.Fatalf("DecodeRow of the golden bytes: %v", err)
			}
			if !row.EventTime.Equal(tt.row.EventTime) || row.EventTime.IsZero() != tt.row.EventTime.IsZero() {
				t.Errorf("decoded event time %v, want %v", row.EventTime, tt.row.EventTime)
			}
			if len(row.Values) != len(tt.row.Values) {
				t.Fatalf("decoded %d values, want %d", len(row.Values), len(tt.row.Values))
			}
			for i, v := range row.Values {
				if !v.Equal(tt.row.Values[i]) {
					t.Errorf("decoded value %d = %v, want %v", i, v, tt.row.Values[i])
				}
			}
		})
	}
}

// TestBucketGolden pins the bucket hash: a key's bucket is found from the
// bucket count recorded with the generation, so a reader of another
// release must hash a key exactly as its writer did. The keys are those of
// the root package's shard vectors (the same FNV-1a); 4294967295 buckets
// expose the whole hash.
func TestBucketGolden(t *testing.T) {
	vectors := []struct {
		key     string // hex of the canonical key
		buckets map[uint32]uint32
	}{
		{"", map[uint32]uint32{1: 0, 2: 1, 3: 1, 7: 2, 64: 5, 1000: 261, math.MaxUint32: 2166136261}},
		{"30", map[uint32]uint32{1: 0, 2: 1, 3: 0, 7: 0, 64: 47, 1000: 63, math.MaxUint32: 890022063}},
		{"31", map[uint32]uint32{1: 0, 2: 0, 3: 1, 7: 2, 64: 28, 1000: 444, math.MaxUint32: 873244444}},
		{"3432", map[uint32]uint32{1: 0, 2: 1, 3: 2, 7: 6, 64: 3, 1000: 11, math.MaxUint32: 2279835011}},
		{"2d31", map[uint32]uint32{1: 0, 2: 1, 3: 2, 7: 2, 64: 43, 1000: 803, math.MaxUint32: 348981803}},
		{"39323233333732303336383534373735383037", map[uint32]uint32{1: 0, 2: 1, 3: 1, 7: 4, 64: 43, 1000: 323, math.MaxUint32: 546809323}},
		{"736b752d3432", map[uint32]uint32{1: 0, 2: 1, 3: 2, 7: 0, 64: 19, 1000: 715, math.MaxUint32: 3351013715}},
		{"68c3a96c6c6f", map[uint32]uint32{1: 0, 2: 0, 3: 0, 7: 4, 64: 0, 1000: 0, math.MaxUint32: 1252296000}},
		{"00ff", map[uint32]uint32{1: 0, 2: 0, 3: 1, 7: 4, 64: 32, 1000: 248, math.MaxUint32: 3531065248}},
	}
	for _, v := range vectors {
		key, err := hex.DecodeString(v.key)
		if err != nil {
			t.Fatal(err)
		}
		for buckets, want := range v.buckets {
			if got := store.BucketOf(key, buckets); got != want {
				t.Errorf("bucketOf(%q, %d) = %d, want %d", key, buckets, got, want)
			}
		}
	}
}
