package store

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/larder-dev/larder"
)

// codecSchemas are the schemas the codec's fuzz targets decode against:
// every type, each list and vector next to a number, no feature at all,
// nine features (two bytes of null bitmap), and bools around bytes. The
// fuzz targets pick one by index, so new ones go at the end.
var codecSchemas = [][]larder.Type{
	{
		larder.TypeInt64, larder.TypeFloat64, larder.TypeFloat32, larder.TypeBool,
		larder.TypeString, larder.TypeBytes, larder.TypeFloat32Vector,
		larder.TypeInt64List, larder.TypeStringList,
	},
	{larder.TypeFloat64, larder.TypeFloat64, larder.TypeFloat64},
	{larder.TypeString},
	{larder.TypeFloat32Vector, larder.TypeInt64},
	{larder.TypeInt64List, larder.TypeFloat32Vector},
	{larder.TypeStringList, larder.TypeFloat32Vector},
	nil,
	{
		larder.TypeInt64, larder.TypeInt64, larder.TypeInt64, larder.TypeInt64, larder.TypeInt64,
		larder.TypeInt64, larder.TypeInt64, larder.TypeInt64, larder.TypeFloat32,
	},
	{larder.TypeBool, larder.TypeBytes, larder.TypeBool},
}

// FuzzDecodeNumbers checks decodeNumbers, the read path's decoding of a row
// straight into model inputs, against decodeRow: on any bytes and any
// selection of features (some out of range), it refuses exactly the rows
// decodeRow refuses, with an error wrapping ErrCorruptRow, and otherwise
// gives each selected feature as Value.Number reads it, or its default.
// decodeRow from a string and from a []byte agree too.
func FuzzDecodeNumbers(f *testing.F) {
	every, err := AppendRow(nil, codecSchemas[0], larder.Row{EventTime: time.Unix(1700000000, 5000), Values: []larder.Value{
		larder.Int64Value(-3), larder.Float64Value(2.5), larder.Float32Value(-1), larder.BoolValue(true),
		larder.StringValue("s"), larder.BytesValue([]byte("b")), larder.Float32VectorValue([]float32{1, 2}),
		larder.Int64ListValue([]int64{5, -5}), larder.StringListValue([]string{"x", "yz"}),
	}})
	if err != nil {
		f.Fatal(err)
	}
	sparse, err := AppendRow(nil, codecSchemas[7], larder.Row{EventTime: time.Unix(-5, 0), Values: []larder.Value{
		larder.Int64Value(math.MaxInt64), larder.Null, larder.Int64Value(math.MinInt64), larder.Null, larder.Int64Value(1 << 53),
		larder.Null, larder.Int64Value(-1), larder.Null, larder.Float32Value(float32(math.Inf(1))),
	}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(uint8(0), every, []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0}, float32(-1))
	f.Add(uint8(7), sparse, []byte{1, 2, 3, 9, 5}, float32(0.5))
	f.Add(uint8(1), []byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0xf8, 0x7f, 0, 0, 0, 0, 0, 0, 0xf0, 0x7f, 0, 0, 0, 0, 0, 0, 0, 0x80}, []byte{1, 2, 3}, float32(7))
	f.Add(uint8(8), []byte{1, 0, 0, 1, 2, 0xfe, 0xff, 0}, []byte{1, 2, 3}, float32(0))
	f.Add(uint8(8), []byte{1, 0, 0, 1, 2, 0xfe, 0xff, 2}, []byte{1}, float32(0)) // a bool byte of 2
	f.Add(uint8(4), []byte{1, 0, 0, 3, 2, 4}, []byte{1}, float32(0))             // a list count past the end
	f.Add(uint8(5), []byte{1, 0, 0, 1, 5, 'a', 'b'}, []byte{2}, float32(0))      // an element past the end
	f.Add(uint8(6), []byte{1, 0}, []byte{0, 1}, float32(3))
	f.Add(uint8(2), []byte{}, []byte{}, float32(0))
	f.Fuzz(func(t *testing.T, schema uint8, src, sel []byte, def float32) {
		types := codecSchemas[int(schema)%len(codecSchemas)]
		features := make([]int, len(sel))
		defs := make([]float32, len(sel))
		for j, b := range sel {
			features[j] = int(b)%(len(types)+2) - 1 // from -1 to len(types)
			defs[j] = def + float32(j)
		}
		out := make([]float32, len(sel))
		at, err := decodeNumbers(string(src), types, features, defs, out, make([]float32, len(types)), make([]bool, len(types)))

		var row, fromBytes larder.Row
		rowErr := decodeRow(string(src), types, &row)
		bytesErr := decodeRow(src, types, &fromBytes)
		if (rowErr == nil) != (bytesErr == nil) {
			t.Fatalf("decodeRow from a string: %v; from bytes: %v", rowErr, bytesErr)
		}
		if (err == nil) != (rowErr == nil) {
			t.Fatalf("decodeNumbers: %v; decodeRow: %v", err, rowErr)
		}
		if err != nil {
			if !errors.Is(err, ErrCorruptRow) || !errors.Is(rowErr, ErrCorruptRow) {
				t.Fatalf("errors do not wrap ErrCorruptRow: decodeNumbers %v, decodeRow %v", err, rowErr)
			}
			return
		}
		if !at.Equal(row.EventTime) || !fromBytes.EventTime.Equal(row.EventTime) {
			t.Fatalf("event time %v, decodeRow's %v (from bytes %v)", at, row.EventTime, fromBytes.EventTime)
		}
		for i := range row.Values {
			if !row.Values[i].Equal(fromBytes.Values[i]) {
				t.Fatalf("value %d from a string %v, from bytes %v", i, row.Values[i], fromBytes.Values[i])
			}
		}
		for j, fi := range features {
			want := defs[j]
			if fi >= 0 && fi < len(types) {
				if n, ok := row.Values[fi].Number(); ok {
					want = float32(n)
				}
			}
			if got := out[j]; math.Float32bits(got) != math.Float32bits(want) && !(got != got && want != want) {
				t.Fatalf("number %d (feature %d) = %v, want %v", j, fi, got, want)
			}
		}
	})
}
