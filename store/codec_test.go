package store_test

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/store"
)

var allTypes = []larder.Type{
	larder.TypeInt64, larder.TypeFloat64, larder.TypeFloat32, larder.TypeBool,
	larder.TypeString, larder.TypeBytes, larder.TypeFloat32Vector,
	larder.TypeInt64List, larder.TypeStringList,
}

func TestCodecRoundTrip(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 30, 45, 123456000, time.UTC)
	long := make([]float32, 1000)
	for i := range long {
		long[i] = float32(i) / 3
	}
	longInts := make([]int64, 1000)
	longStrs := make([]string, 1000)
	for i := range longInts {
		longInts[i] = int64(i*i*i) - 1<<20
		longStrs[i] = strings.Repeat("k", i%7)
	}
	tests := []struct {
		name  string
		types []larder.Type
		row   larder.Row
	}{
		{"every type", allTypes, larder.Row{EventTime: at, Values: []larder.Value{
			larder.Int64Value(-42), larder.Float64Value(3.25), larder.Float32Value(-1.5), larder.BoolValue(true),
			larder.StringValue("héllo"), larder.BytesValue([]byte{0, 1, 0xff}), larder.Float32VectorValue([]float32{1, -2, 0.5}),
			larder.Int64ListValue([]int64{7, -1, 300}), larder.StringListValue([]string{"a", "", "é"}),
		}}},
		{"all null", allTypes, larder.Row{EventTime: at, Values: make([]larder.Value, len(allTypes))}},
		{"some null", allTypes, larder.Row{EventTime: at, Values: []larder.Value{
			larder.Null, larder.Float64Value(1), larder.Null, larder.BoolValue(false), larder.Null, larder.Null, larder.Float32VectorValue(nil),
			larder.Null, larder.StringListValue(nil),
		}}},
		{"empty lists", []larder.Type{larder.TypeInt64List, larder.TypeStringList},
			larder.Row{EventTime: at, Values: []larder.Value{larder.Int64ListValue([]int64{}), larder.StringListValue([]string{})}}},
		{"list extremes", []larder.Type{larder.TypeInt64List, larder.TypeStringList},
			larder.Row{EventTime: at, Values: []larder.Value{
				larder.Int64ListValue([]int64{math.MinInt64, math.MaxInt64, 0, -1, 1}),
				larder.StringListValue([]string{strings.Repeat("y", 300), "", "\x00\xff", "z"}),
			}}},
		{"long lists", []larder.Type{larder.TypeInt64List, larder.TypeStringList},
			larder.Row{EventTime: at, Values: []larder.Value{larder.Int64ListValue(longInts), larder.StringListValue(longStrs)}}},
		{"empty strings and vector", []larder.Type{larder.TypeString, larder.TypeBytes, larder.TypeFloat32Vector},
			larder.Row{EventTime: at, Values: []larder.Value{larder.StringValue(""), larder.BytesValue(nil), larder.Float32VectorValue([]float32{})}}},
		{"long vector and string", []larder.Type{larder.TypeFloat32Vector, larder.TypeString},
			larder.Row{EventTime: at, Values: []larder.Value{larder.Float32VectorValue(long), larder.StringValue(strings.Repeat("x", 70000))}}},
		{"special floats", []larder.Type{larder.TypeFloat64, larder.TypeFloat64, larder.TypeFloat64, larder.TypeFloat64, larder.TypeFloat32, larder.TypeFloat32, larder.TypeFloat32Vector},
			larder.Row{EventTime: at, Values: []larder.Value{
				larder.Float64Value(math.NaN()), larder.Float64Value(math.Inf(1)), larder.Float64Value(math.Inf(-1)), larder.Float64Value(math.Copysign(0, -1)),
				larder.Float32Value(float32(math.NaN())), larder.Float32Value(float32(math.Inf(-1))),
				larder.Float32VectorValue([]float32{float32(math.NaN()), float32(math.Inf(1)), math.SmallestNonzeroFloat32}),
			}}},
		{"int extremes", []larder.Type{larder.TypeInt64, larder.TypeInt64, larder.TypeInt64},
			larder.Row{EventTime: at, Values: []larder.Value{larder.Int64Value(math.MinInt64), larder.Int64Value(math.MaxInt64), larder.Int64Value(0)}}},
		{"zero event time", []larder.Type{larder.TypeBool}, larder.Row{Values: []larder.Value{larder.BoolValue(true)}}},
		{"event time before 1970", []larder.Type{larder.TypeBool},
			larder.Row{EventTime: time.Date(1901, 1, 1, 0, 0, 0, 1000, time.UTC), Values: []larder.Value{larder.Null}}},
		{"no features", nil, larder.Row{EventTime: at}},
		{"nine features (two bitmap bytes)", []larder.Type{
			larder.TypeInt64, larder.TypeInt64, larder.TypeInt64, larder.TypeInt64, larder.TypeInt64,
			larder.TypeInt64, larder.TypeInt64, larder.TypeInt64, larder.TypeInt64},
			larder.Row{EventTime: at, Values: []larder.Value{
				larder.Int64Value(1), larder.Null, larder.Int64Value(3), larder.Null, larder.Int64Value(5),
				larder.Null, larder.Int64Value(7), larder.Null, larder.Null}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enc, err := store.AppendRow([]byte("prefix"), tt.types, tt.row)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(enc, []byte("prefix")) {
				t.Fatal("AppendRow did not append")
			}
			enc = enc[len("prefix"):]
			got := larder.Row{Values: make([]larder.Value, 0, 32)}
			if err := store.DecodeRow(enc, tt.types, &got); err != nil {
				t.Fatal(err)
			}
			if !got.EventTime.Equal(tt.row.EventTime) || got.EventTime.IsZero() != tt.row.EventTime.IsZero() {
				t.Errorf("event time = %v, want %v", got.EventTime, tt.row.EventTime)
			}
			if len(got.Values) != len(tt.row.Values) {
				t.Fatalf("%d values, want %d", len(got.Values), len(tt.row.Values))
			}
			for i := range got.Values {
				want := tt.row.Values[i]
				if want.Type() == larder.TypeFloat32Vector && len(want.Vector()) == 0 {
					want = larder.Float32VectorValue(make([]float32, 0))
				}
				if !got.Values[i].Equal(want) {
					t.Errorf("value %d = %v, want %v", i, got.Values[i], tt.row.Values[i])
				}
			}
			again, err := store.AppendRow(nil, tt.types, got)
			if err != nil || !bytes.Equal(again, enc) {
				t.Errorf("re-encoding differs: %x vs %x (err %v)", again, enc, err)
			}
		})
	}
}

func TestCodecSize(t *testing.T) {
	types := make([]larder.Type, 20)
	vals := make([]larder.Value, 20)
	for i := range types {
		types[i], vals[i] = larder.TypeFloat64, larder.Float64Value(float64(i)*1.1)
	}
	enc, err := store.AppendRow(nil, types, larder.Row{EventTime: time.Now(), Values: vals})
	if err != nil {
		t.Fatal(err)
	}
	// version + 8-byte varint time + 3-byte bitmap + 160 bytes of floats
	if len(enc) != 1+8+3+160 {
		t.Errorf("20 float64 features encode to %d bytes, want %d", len(enc), 1+8+3+160)
	}
}

func TestAppendRowErrors(t *testing.T) {
	tests := []struct {
		name  string
		types []larder.Type
		row   larder.Row
	}{
		{"too few values", []larder.Type{larder.TypeInt64, larder.TypeInt64}, larder.Row{Values: []larder.Value{larder.Int64Value(1)}}},
		{"too many values", []larder.Type{larder.TypeInt64}, larder.Row{Values: []larder.Value{larder.Int64Value(1), larder.Null}}},
		{"wrong type", []larder.Type{larder.TypeInt64}, larder.Row{Values: []larder.Value{larder.StringValue("1")}}},
		{"invalid feature type", []larder.Type{larder.TypeInvalid}, larder.Row{Values: []larder.Value{larder.Int64Value(1)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := []byte("keep")
			out, err := store.AppendRow(dst, tt.types, tt.row)
			if err == nil {
				t.Fatal("no error")
			}
			if string(out) != "keep" {
				t.Errorf("dst changed on error: %q", out)
			}
		})
	}
}

func TestDecodeRowErrors(t *testing.T) {
	types := []larder.Type{larder.TypeInt64, larder.TypeString, larder.TypeBool}
	good, err := store.AppendRow(nil, types, larder.Row{
		EventTime: time.UnixMicro(0), // one varint byte: the bitmap is good[2]
		Values:    []larder.Value{larder.Int64Value(300), larder.StringValue("abc"), larder.BoolValue(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	mutate := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	tests := []struct {
		name  string
		src   []byte
		types []larder.Type
	}{
		{"empty", nil, types},
		{"bad version", mutate(func(b []byte) []byte { b[0] = 9; return b }), types},
		{"trailing byte", append(bytes.Clone(good), 0), types},
		{"bool out of range", mutate(func(b []byte) []byte { b[len(b)-1] = 2; return b }), types},
		{"bitmap bits past the end", mutate(func(b []byte) []byte { b[2] |= 0x80; return b }), types},
		{"other schema", good, []larder.Type{larder.TypeFloat64, larder.TypeFloat64, larder.TypeFloat64}},
		{"non-canonical varint", []byte{1, 0x80, 0x00, 0x00, 0x02}, []larder.Type{larder.TypeInt64}},
		{"varint overflow", []byte{1, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}, []larder.Type{larder.TypeInt64}},
		{"huge string length", []byte{1, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f}, []larder.Type{larder.TypeString}},
		{"huge vector", []byte{1, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, []larder.Type{larder.TypeFloat32Vector}},
		{"huge int64 list", []byte{1, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, []larder.Type{larder.TypeInt64List}},
		{"int64 list count past the end", []byte{1, 0, 0, 3, 2, 4}, []larder.Type{larder.TypeInt64List}},
		{"int64 list truncated varint", []byte{1, 0, 0, 2, 2, 0x80}, []larder.Type{larder.TypeInt64List}},
		{"huge string list", []byte{1, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f}, []larder.Type{larder.TypeStringList}},
		{"string list count past the end", []byte{1, 0, 0, 3, 0, 0}, []larder.Type{larder.TypeStringList}},
		{"string list element past the end", []byte{1, 0, 0, 1, 5, 'a', 'b'}, []larder.Type{larder.TypeStringList}},
		{"string list non-canonical length", []byte{1, 0, 0, 1, 0x81, 0x00, 'a'}, []larder.Type{larder.TypeStringList}},
	}
	for i := 1; i < len(good); i++ {
		tests = append(tests, struct {
			name  string
			src   []byte
			types []larder.Type
		}{"truncated", good[:i], types})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var row larder.Row
			err := store.DecodeRow(tt.src, tt.types, &row)
			if !errors.Is(err, store.ErrCorruptRow) {
				t.Fatalf("err = %v, want ErrCorruptRow", err)
			}
		})
	}
}

func FuzzDecodeRow(f *testing.F) {
	schemas := [][]larder.Type{
		allTypes,
		{larder.TypeFloat64, larder.TypeFloat64, larder.TypeFloat64},
		{larder.TypeString},
		{larder.TypeFloat32Vector, larder.TypeInt64},
		{larder.TypeInt64List, larder.TypeFloat32Vector},
		{larder.TypeStringList, larder.TypeFloat32Vector},
	}
	seed, _ := store.AppendRow(nil, allTypes, larder.Row{EventTime: time.Unix(1700000000, 5000), Values: []larder.Value{
		larder.Int64Value(-3), larder.Float64Value(2), larder.Float32Value(1), larder.BoolValue(true),
		larder.StringValue("s"), larder.BytesValue([]byte("b")), larder.Float32VectorValue([]float32{1, 2}),
		larder.Int64ListValue([]int64{5, -5}), larder.StringListValue([]string{"x", "yz"}),
	}})
	f.Add(uint8(0), seed)
	f.Add(uint8(1), []byte{1, 0, 0})
	f.Add(uint8(2), []byte{1, 2, 0, 3, 'a', 'b', 'c'})
	f.Add(uint8(3), []byte{1, 2, 0, 1, 0, 0, 0x80, 0x3f, 4})
	f.Add(uint8(4), []byte{1, 2, 0, 2, 0x0a, 0x09, 1, 0, 0, 0x80, 0x3f})
	f.Add(uint8(5), []byte{1, 2, 0, 2, 1, 'a', 0, 0})
	f.Fuzz(func(t *testing.T, schema uint8, src []byte) {
		types := schemas[int(schema)%len(schemas)]
		var row larder.Row
		if err := store.DecodeRow(src, types, &row); err != nil {
			if !errors.Is(err, store.ErrCorruptRow) {
				t.Fatalf("error does not wrap ErrCorruptRow: %v", err)
			}
			return
		}
		again, err := store.AppendRow(nil, types, row)
		if err != nil {
			t.Fatalf("decoded row does not encode: %v", err)
		}
		if !bytes.Equal(again, src) {
			t.Fatalf("re-encoding differs:\n got %x\nwant %x", again, src)
		}
	})
}

func BenchmarkCodec20Float64(b *testing.B) {
	types := make([]larder.Type, 20)
	vals := make([]larder.Value, 20)
	for i := range types {
		types[i], vals[i] = larder.TypeFloat64, larder.Float64Value(float64(i)*1.1)
	}
	row := larder.Row{EventTime: time.Now(), Values: vals}
	enc, _ := store.AppendRow(nil, types, row)
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, 256)
		for b.Loop() {
			buf, _ = store.AppendRow(buf[:0], types, row)
		}
	})
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		dst := larder.Row{Values: make([]larder.Value, 0, 20)}
		for b.Loop() {
			if err := store.DecodeRow(enc, types, &dst); err != nil {
				b.Fatal(err)
			}
		}
	})
}
