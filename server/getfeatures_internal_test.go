package server

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/mem"

	"github.com/larder-dev/larder"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
)

// TestSizeEstimate builds responses of every type of value, of rows found
// and not, and checks that buildFeatures' estimate of their size is never
// below their encoded size, nor more than twice it: a limit below the
// estimate stops the build with larder.ErrTooLarge, one at it does not.
func TestSizeEstimate(t *testing.T) {
	v := &larder.View{Name: "v", Features: []larder.Feature{
		{Name: "i", Type: larder.TypeInt64},
		{Name: "d", Type: larder.TypeFloat64},
		{Name: "f", Type: larder.TypeFloat32},
		{Name: "b", Type: larder.TypeBool},
		{Name: "s", Type: larder.TypeString},
		{Name: "y", Type: larder.TypeBytes},
		{Name: "e", Type: larder.TypeFloat32Vector},
		{Name: "l", Type: larder.TypeInt64List},
		{Name: "sl", Type: larder.TypeStringList},
	}}
	now := time.Now()
	full := larder.Row{EventTime: now, Values: []larder.Value{
		larder.Int64Value(math.MinInt64), larder.Float64Value(1.5), larder.Float32Value(2.5), larder.BoolValue(true),
		larder.StringValue(strings.Repeat("s", 300)), larder.BytesValue(make([]byte, 200)),
		larder.Float32VectorValue(make([]float32, 64)), larder.Int64ListValue([]int64{-1, 1 << 62, 3}),
		larder.StringListValue([]string{"a", strings.Repeat("b", 200), ""}),
	}}
	small := larder.Row{EventTime: now.Add(-time.Hour), Values: []larder.Value{
		larder.Int64Value(1), larder.Float64Value(0), larder.Float32Value(0), larder.BoolValue(false),
		larder.StringValue(""), larder.BytesValue(nil), larder.Float32VectorValue(nil), larder.Int64ListValue(nil), larder.StringListValue(nil),
	}}
	nulls := larder.Row{EventTime: now, Values: make([]larder.Value, len(v.Features))}
	var cols []column
	var names []string
	for i, f := range v.Features {
		cols = append(cols, column{feature: i})
		names = append(names, "v:"+f.Name)
	}
	many := struct {
		rows  []larder.Row
		found []bool
		keys  []*larderv1.EntityKey
	}{}
	for i := range 500 {
		many.rows = append(many.rows, small)
		many.found = append(many.found, i%5 != 0)
		many.keys = append(many.keys, intKey(int64(i*7919)))
	}
	for _, tc := range []struct {
		name  string
		rows  []larder.Row
		found []bool
		keys  []*larderv1.EntityKey
	}{
		{"many rows", many.rows, many.found, many.keys},
		{"large values", []larder.Row{full, full}, []bool{true, true}, []*larderv1.EntityKey{intKey(math.MinInt64), intKey(1)}},
		{"small values", []larder.Row{small, small, small}, []bool{true, true, true}, []*larderv1.EntityKey{strKey("a"), strKey(strings.Repeat("k", 500)), strKey("")}},
		{"nulls", []larder.Row{nulls}, []bool{true}, []*larderv1.EntityKey{intKey(7)}},
		{"not found", []larder.Row{{}, {}}, []bool{false, false}, []*larderv1.EntityKey{intKey(7), intKey(8)}},
		{"a mix", []larder.Row{full, {}, small, nulls}, []bool{true, false, true, true}, []*larderv1.EntityKey{intKey(1), intKey(2), intKey(3), intKey(4)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := &larder.Lookup{View: v, Found: tc.found, Rows: tc.rows, Generation: 12, Model: "sha256:0123456789ab"}
			lookups := []*larder.Lookup{l}
			resp, err := buildFeatures(len(tc.keys), lookups, cols, names, now, &sizeEstimate{}, math.MaxInt, false)
			if err != nil {
				t.Fatal(err)
			}
			// The estimate is the smallest limit that lets the build
			// finish: it only grows, row by row.
			size := resp.SizeVT()
			lo, hi := 0, 10*size
			for lo < hi {
				mid := (lo + hi) / 2
				if _, err := buildFeatures(len(tc.keys), lookups, cols, names, now, &sizeEstimate{}, mid, false); err == nil {
					hi = mid
				} else if !errors.Is(err, larder.ErrTooLarge) {
					t.Fatalf("limit %d: %v, want larder.ErrTooLarge", mid, err)
				} else {
					lo = mid + 1
				}
			}
			t.Logf("encoded %d bytes, estimated %d", size, lo)
			if lo < size || lo > 2*size {
				t.Errorf("estimated %d bytes for a response of %d: want at least its size and at most twice it", lo, size)
			}
		})
	}
}

// TestReusedResponse checks that a response built in the memory of one
// the server's codec has encoded, and so given back to the pool, encodes
// as one built afresh: nothing of the earlier rows shows through, as in the
// null rows of an array.
func TestReusedResponse(t *testing.T) {
	v := &larder.View{Name: "v", Features: []larder.Feature{
		{Name: "d", Type: larder.TypeFloat64},
		{Name: "s", Type: larder.TypeString},
		{Name: "e", Type: larder.TypeFloat32Vector},
	}}
	cols := []column{{feature: 0}, {feature: 1}, {feature: 2}}
	names := []string{"v:d", "v:s", "v:e"}
	now := time.Now()
	full := larder.Row{EventTime: now, Values: []larder.Value{
		larder.Float64Value(1.5), larder.StringValue("abc"), larder.Float32VectorValue([]float32{1, 2}),
	}}
	nulls := larder.Row{EventTime: now, Values: make([]larder.Value, len(v.Features))}
	encode := func(c interface {
		Marshal(any) (mem.BufferSlice, error)
	}, rows []larder.Row, found []bool) []byte {
		t.Helper()
		l := &larder.Lookup{View: v, Found: found, Rows: rows, Generation: 3}
		resp, err := buildFeatures(len(rows), []*larder.Lookup{l}, cols, names, now, &sizeEstimate{}, math.MaxInt, true)
		if err != nil {
			t.Fatal(err)
		}
		data, err := c.Marshal(resp)
		if err != nil {
			t.Fatal(err)
		}
		return data.Materialize()
	}
	sparse, sparseFound := []larder.Row{nulls, {}, nulls}, []bool{true, false, true}
	// Codec, unlike serverCodec, gives nothing back.
	want := encode(Codec{}, sparse, sparseFound)
	codec := &serverCodec{}
	for range 3 {
		encode(codec, []larder.Row{full, full, full, full}, []bool{true, true, true, true})
		if got := encode(codec, sparse, sparseFound); !bytes.Equal(got, want) {
			t.Fatalf("a response built in reused memory encodes as\n%x\nwant\n%x", got, want)
		}
	}

	// A response not served over gRPC is never given back.
	l := &larder.Lookup{View: v, Found: []bool{true}, Rows: []larder.Row{full}, Generation: 3}
	resp, err := buildFeatures(1, []*larder.Lookup{l}, cols, names, now, &sizeEstimate{}, math.MaxInt, false)
	if err != nil {
		t.Fatal(err)
	}
	unsent.Lock()
	_, held := unsent.m[resp]
	unsent.Unlock()
	if held {
		t.Error("a response built for a caller in the process is held to be given back once encoded")
	}
}

func intKey(v int64) *larderv1.EntityKey {
	return &larderv1.EntityKey{Key: &larderv1.EntityKey_Int64Value{Int64Value: v}}
}

func strKey(v string) *larderv1.EntityKey {
	return &larderv1.EntityKey{Key: &larderv1.EntityKey_StringValue{StringValue: v}}
}

// TestEcho checks what error messages repeat of a request's strings.
func TestEcho(t *testing.T) {
	long := strings.Repeat("é", 150)
	for _, tc := range []struct {
		in, want string
	}{
		{"", `""`},
		{"user_profile", `"user_profile"`},
		{"a\nb\"c", `"a\nb\"c"`},
		{"bad\xff\xfe", `"bad\xff\xfe"`},
		{strings.Repeat("x", 100), `"` + strings.Repeat("x", 100) + `"`},
		{strings.Repeat("x", 101), `"` + strings.Repeat("x", 100) + `"… (101 bytes)`},
		{long, `"` + strings.Repeat("é", 100) + `"… (300 bytes)`},
		{strings.Repeat("\xff", 1<<20), `"` + strings.Repeat(`\xff`, 100) + `"… (1048576 bytes)`},
		// A rune is not split where the cut falls.
		{strings.Repeat("x", 99) + "é" + "y", `"` + strings.Repeat("x", 99) + `é"… (102 bytes)`},
	} {
		if got := echo(tc.in); got != tc.want {
			t.Errorf("echo(%.40q) = %.200s, want %.200s", tc.in, got, tc.want)
		}
	}
}
