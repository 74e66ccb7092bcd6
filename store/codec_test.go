package store_test

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

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
				larder.StringListValue([]string{strings.Repeat("y", 300), "", "\x00ÿ", "z"}),
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

// FuzzDecodeRow checks that DecodeRow never panics on any bytes against
// any of store.CodecSchemas, that it refuses what it cannot decode with an
// error wrapping ErrCorruptRow, and that what it accepts is the one
// canonical encoding of the row it returns: AppendRow writes it back byte
// for byte. A decode into a row that held other values gives the same row.
func FuzzDecodeRow(f *testing.F) {
	schemas := store.CodecSchemas
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
	f.Add(uint8(6), []byte{1, 0})                                                             // no features: no bitmap
	f.Add(uint8(7), []byte{1, 0, 0xaa, 0x01, 2, 4, 6, 8, 10})                                 // nine features, two bitmap bytes
	f.Add(uint8(7), []byte{1, 0, 0xff, 0x03})                                                 // a bit past the ninth feature
	f.Add(uint8(8), []byte{1, 0, 0, 1, 2, 0xfe, 0xff, 0})                                     // bool, bytes, bool
	f.Add(uint8(8), []byte{1, 0, 0, 2, 0, 0})                                                 // a bool byte of 2
	f.Add(uint8(0), []byte{})                                                                 // empty
	f.Add(uint8(0), []byte{2, 0, 0, 0})                                                       // another codec version
	f.Add(uint8(2), []byte{1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02, 0}) // event time past 64 bits
	f.Add(uint8(2), []byte{1, 0, 0, 0x80, 0})                                                 // a non-canonical length
	f.Fuzz(func(t *testing.T, schema uint8, src []byte) {
		types := schemas[int(schema)%len(schemas)]
		var row larder.Row
		err := store.DecodeRow(src, types, &row)

		// A row that held values, and capacity for more, decodes the same.
		used := larder.Row{EventTime: time.Unix(1, 0), Values: make([]larder.Value, 3, 16)}
		for i := range used.Values {
			used.Values[i] = larder.StringValue("old")
		}
		errUsed := store.DecodeRow(src, types, &used)
		if (err == nil) != (errUsed == nil) {
			t.Fatalf("decoding into a fresh row: %v; into a used one: %v", err, errUsed)
		}
		if err != nil {
			if !errors.Is(err, store.ErrCorruptRow) {
				t.Fatalf("error does not wrap ErrCorruptRow: %v", err)
			}
			if len(err.Error()) > 256 {
				t.Fatalf("%d-byte error message: %.300s", len(err.Error()), err)
			}
			return
		}
		if !used.EventTime.Equal(row.EventTime) || len(used.Values) != len(row.Values) {
			t.Fatalf("decoding into a used row gave %v, into a fresh one %v", used, row)
		}
		for i := range row.Values {
			if !used.Values[i].Equal(row.Values[i]) {
				t.Fatalf("value %d: decoding into a used row gave %v, into a fresh one %v", i, used.Values[i], row.Values[i])
			}
		}
		again, err := store.AppendRow(nil, types, row)
		if err != nil && strings.Contains(err.Error(), "not valid UTF-8") {
			// Strings are checked when written, not when read: rows
			// written before the check still read.
			return
		}
		if err != nil {
			t.Fatalf("decoded row does not encode: %v", err)
		}
		if !bytes.Equal(again, src) {
			t.Fatalf("re-encoding differs:\n got %x\nwant %x", again, src)
		}
	})
}

// FuzzEncodeRow checks that every row AppendRow encodes, of any of
// store.CodecSchemas with any values and nulls, decodes to itself, and that
// no proper prefix of its encoding, nor the encoding with a byte more,
// decodes at all.
func FuzzEncodeRow(f *testing.F) {
	f.Add(uint8(0), uint16(0), int64(1700000000123456), int64(-3), 2.5, float32(1), true, "s,t", []byte("vector.."))
	f.Add(uint8(0), uint16(0x1ff), int64(0), int64(0), 0.0, float32(0), false, "", []byte(nil))
	f.Add(uint8(0), uint16(0x0aa), int64(-1), int64(math.MaxInt64), math.Inf(-1), float32(math.NaN()), true, ",,", []byte{0xff, 0xff, 0xff, 0x7f})
	f.Add(uint8(1), uint16(2), int64(math.MinInt64), int64(math.MinInt64), math.NaN(), float32(math.Copysign(0, -1)), false, "x", []byte{1})
	f.Add(uint8(2), uint16(0), int64(math.MaxInt64), int64(1), 0.0, float32(0), false, "\xff\x00é", []byte(nil))
	f.Add(uint8(4), uint16(0), int64(5), int64(300), 0.0, float32(0), false, "", bytes.Repeat([]byte{0x80}, 300))
	f.Add(uint8(5), uint16(0), int64(5), int64(1), 0.0, float32(0), false, strings.Repeat("ab,", 100), []byte{0, 0, 0, 0})
	f.Add(uint8(6), uint16(0), int64(7), int64(1), 0.0, float32(0), false, "", []byte(nil))
	f.Add(uint8(7), uint16(0x155), int64(7), int64(-1), 0.0, float32(0), false, "", []byte(nil))
	f.Add(uint8(8), uint16(0x5), int64(7), int64(-1), 0.0, float32(0), true, "", []byte{0})
	f.Fuzz(func(t *testing.T, schema uint8, nulls uint16, us, n int64, x float64, y float32, b bool, s string, raw []byte) {
		types := store.CodecSchemas[int(schema)%len(store.CodecSchemas)]
		row := larder.Row{EventTime: time.UnixMicro(us).UTC(), Values: make([]larder.Value, len(types))}
		for i, typ := range types {
			if nulls&(1<<i) != 0 {
				continue
			}
			row.Values[i] = fuzzValue(typ, i, n, x, y, b, s, raw)
		}
		enc, err := store.AppendRow([]byte("prefix"), types, row)
		if err != nil && !utf8.ValidString(s) && strings.Contains(err.Error(), "not valid UTF-8") {
			return // a string feature that is not UTF-8 is refused
		}
		if err != nil {
			t.Fatalf("AppendRow: %v", err)
		}
		if !bytes.HasPrefix(enc, []byte("prefix")) {
			t.Fatalf("AppendRow did not append: %x", enc)
		}
		enc = enc[len("prefix"):]
		var got larder.Row
		if err := store.DecodeRow(enc, types, &got); err != nil {
			t.Fatalf("DecodeRow of AppendRow's %x: %v", enc, err)
		}
		if got.EventTime.UnixMicro() != us || got.EventTime.Location() != time.UTC {
			t.Fatalf("event time %v (%d µs), want %d µs in UTC", got.EventTime, got.EventTime.UnixMicro(), us)
		}
		for i := range row.Values {
			if !got.Values[i].Equal(row.Values[i]) {
				t.Fatalf("value %d (%s) = %v, want %v", i, types[i], got.Values[i], row.Values[i])
			}
		}
		if again, _ := store.AppendRow(nil, types, got); !bytes.Equal(again, enc) {
			t.Fatalf("re-encoding differs:\n got %x\nwant %x", again, enc)
		}
		// Every proper prefix is refused; for long encodings, a spread of them.
		step := max(1, len(enc)/256)
		for i := 0; i < len(enc); i += step {
			if err := store.DecodeRow(enc[:i], types, &got); !errors.Is(err, store.ErrCorruptRow) {
				t.Fatalf("the first %d of %d bytes: %v, want ErrCorruptRow", i, len(enc), err)
			}
		}
		if err := store.DecodeRow(append(enc, 0), types, &got); !errors.Is(err, store.ErrCorruptRow) {
			t.Fatalf("a byte more: %v, want ErrCorruptRow", err)
		}
	})
}

// fuzzValue makes a value of type typ, the i-th feature of a row, out of
// a fuzzer's inputs: numbers as given, a vector of raw's bytes read as
// float32s, an int64 list of raw's bytes spread by n, a string list of s
// cut at its commas.
func fuzzValue(typ larder.Type, i int, n int64, x float64, y float32, b bool, s string, raw []byte) larder.Value {
	switch typ {
	case larder.TypeInt64:
		return larder.Int64Value(n + int64(i))
	case larder.TypeFloat64:
		return larder.Float64Value(x)
	case larder.TypeFloat32:
		return larder.Float32Value(y)
	case larder.TypeBool:
		return larder.BoolValue(b != (i%2 == 1))
	case larder.TypeString:
		return larder.StringValue(s)
	case larder.TypeBytes:
		return larder.BytesValue(raw)
	case larder.TypeFloat32Vector:
		vec := make([]float32, len(raw)/4)
		for j := range vec {
			vec[j] = math.Float32frombits(uint32(raw[4*j]) | uint32(raw[4*j+1])<<8 | uint32(raw[4*j+2])<<16 | uint32(raw[4*j+3])<<24)
		}
		return larder.Float32VectorValue(vec)
	case larder.TypeInt64List:
		l := make([]int64, len(raw))
		for j, c := range raw {
			l[j] = (int64(c) - 128) * (n | 1) << (j % 64)
		}
		return larder.Int64ListValue(l)
	case larder.TypeStringList:
		return larder.StringListValue(strings.Split(s, ","))
	}
	return larder.Null
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

// TestNotUTF8Refused checks that strings that are not valid UTF-8, which
// protobuf clients cannot decode, are refused when written, as a string
// feature and as an item of a string list; bytes features take any bytes.
func TestNotUTF8Refused(t *testing.T) {
	for _, tc := range []struct {
		typ  larder.Type
		v    larder.Value
		want string
	}{
		{larder.TypeString, larder.StringValue("ab\xc0"), `feature 0 is a string that is not valid UTF-8 ("ab\xc0")`},
		{larder.TypeStringList, larder.StringListValue([]string{"ok", "\xed\xa0\x80"}), `feature 0, item 1 is a string that is not valid UTF-8`},
	} {
		_, err := store.AppendRow(nil, []larder.Type{tc.typ}, larder.Row{Values: []larder.Value{tc.v}})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("AppendRow of a %s that is not UTF-8 = %v, want %q", tc.typ, err, tc.want)
		}
	}
	if _, err := store.AppendRow(nil, []larder.Type{larder.TypeBytes}, larder.Row{Values: []larder.Value{larder.BytesValue([]byte{0xff, 0})}}); err != nil {
		t.Errorf("AppendRow of bytes = %v", err)
	}
}
