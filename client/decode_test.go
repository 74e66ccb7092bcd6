package client_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/larder-dev/larder/client"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
)

// randomResponse is a well-formed GetFeaturesResponse of random shape:
// columns of every type, this client's and an unknown one, with nulls and
// lists, over several views.
func randomResponse(rng *rand.Rand) *larderv1.GetFeaturesResponse {
	rows := rng.IntN(5)
	resp := &larderv1.GetFeaturesResponse{RowCount: int32(rows)}
	for v := range 1 + rng.IntN(3) {
		vr := &larderv1.ViewRows{View: []string{"user", "item", "ctx"}[v]}
		for range rows {
			vr.Statuses = append(vr.Statuses, larderv1.FeatureStatus(rng.IntN(4)))
			vr.EventTimeMicros = append(vr.EventTimeMicros, rng.Int64N(2e15)-1e15)
		}
		resp.Views = append(resp.Views, vr)
		resp.Generations = append(resp.Generations, &larderv1.ViewGeneration{View: vr.View, Generation: rng.Int64N(100), Model: "m", TileTimeMicros: rng.Int64N(1e15)})
	}
	for range rng.IntN(8) {
		t := larderv1.ValueType(rng.IntN(11)) // 10 is a type from the future
		col := &larderv1.FeatureColumn{Name: []string{"user:f", "item:price", "", "ctx:é"}[rng.IntN(4)], View: int32(rng.IntN(len(resp.Views))), Type: t}
		for r := range rows {
			if rng.IntN(3) == 0 {
				col.NullRows = append(col.NullRows, int32(r))
			}
			n := rng.IntN(4)
			switch t {
			case larderv1.ValueType_VALUE_TYPE_INT64:
				col.Int64Values = append(col.Int64Values, rng.Int64()-rng.Int64())
			case larderv1.ValueType_VALUE_TYPE_FLOAT64:
				col.Float64Values = append(col.Float64Values, []float64{rng.NormFloat64(), math.Inf(-1), 0}[rng.IntN(3)])
			case larderv1.ValueType_VALUE_TYPE_FLOAT32:
				col.Float32Values = append(col.Float32Values, float32(rng.NormFloat64()))
			case larderv1.ValueType_VALUE_TYPE_BOOL:
				col.BoolValues = append(col.BoolValues, rng.IntN(2) == 0)
			case larderv1.ValueType_VALUE_TYPE_STRING:
				col.StringValues = append(col.StringValues, []string{"", "a", "ünïcode"}[rng.IntN(3)])
			case larderv1.ValueType_VALUE_TYPE_BYTES:
				col.BytesValues = append(col.BytesValues, []byte{byte(r), 0, 255}[:rng.IntN(4)])
			case larderv1.ValueType_VALUE_TYPE_FLOAT32_VECTOR:
				col.ListLengths = append(col.ListLengths, int32(n))
				for range n {
					col.Float32VectorValues = append(col.Float32VectorValues, float32(rng.Float64()))
				}
			case larderv1.ValueType_VALUE_TYPE_INT64_LIST:
				col.ListLengths = append(col.ListLengths, int32(n))
				for range n {
					col.Int64ListValues = append(col.Int64ListValues, -rng.Int64N(1e12))
				}
			case larderv1.ValueType_VALUE_TYPE_STRING_LIST:
				col.ListLengths = append(col.ListLengths, int32(n))
				for range n {
					col.StringListValues = append(col.StringListValues, "x")
				}
			}
		}
		resp.Columns = append(resp.Columns, col)
	}
	return resp
}

// reencode re-encodes data, a GetFeaturesResponse, as other encoders may:
// the repeated scalars one value per field instead of packed, the fields of
// each column by number from the highest, and a field of a later version of the API
// in each column and at the top.
func reencode(t testing.TB, data []byte) []byte {
	t.Helper()
	future := protowire.AppendVarint(protowire.AppendTag(nil, 99, protowire.VarintType), 5)
	future = protowire.AppendBytes(protowire.AppendTag(future, 98, protowire.BytesType), []byte("later"))
	var out []byte
	for len(data) > 0 {
		num, typ, n := protowire.ConsumeTag(data)
		vn := protowire.ConsumeFieldValue(num, typ, data[n:])
		if n < 0 || vn < 0 {
			t.Fatal("malformed")
		}
		value := data[n : n+vn]
		data = data[n+vn:]
		if num != 5 {
			out = protowire.AppendTag(out, num, typ)
			out = append(out, value...)
			continue
		}
		col, _ := protowire.ConsumeBytes(value)
		var fields [][]byte
		for len(col) > 0 {
			cnum, ctyp, cn := protowire.ConsumeTag(col)
			cvn := protowire.ConsumeFieldValue(cnum, ctyp, col[cn:])
			cvalue := col[cn : cn+cvn]
			col = col[cn+cvn:]
			elem := map[protowire.Number]protowire.Type{4: protowire.VarintType, 10: protowire.VarintType, 11: protowire.Fixed64Type,
				12: protowire.Fixed32Type, 13: protowire.VarintType, 16: protowire.VarintType, 17: protowire.Fixed32Type, 18: protowire.VarintType}
			var f []byte
			if et, ok := elem[cnum]; ok && ctyp == protowire.BytesType {
				payload, _ := protowire.ConsumeBytes(cvalue)
				for len(payload) > 0 {
					en := protowire.ConsumeFieldValue(cnum, et, payload)
					f = protowire.AppendTag(f, cnum, et)
					f = append(f, payload[:en]...)
					payload = payload[en:]
				}
			} else {
				f = protowire.AppendTag(f, cnum, ctyp)
				f = append(f, cvalue...)
			}
			fields = append(fields, f)
		}
		// The fields by number, highest first; those of one number keep
		// their order, which is the order of a repeated field's values.
		slices.SortStableFunc(fields, func(a, b []byte) int {
			na, _, _ := protowire.ConsumeTag(a)
			nb, _, _ := protowire.ConsumeTag(b)
			return int(nb) - int(na)
		})
		body := slices.Clone(future)
		for _, f := range fields {
			body = append(body, f...)
		}
		out = protowire.AppendBytes(protowire.AppendTag(out, 5, protowire.BytesType), body)
	}
	return append(out, future...)
}

// wantValue is the value of column c in row r of a well-formed response,
// read from its message.
func wantValue(c *larderv1.FeatureColumn, r int) *larderv1.Value {
	if slices.Contains(c.GetNullRows(), int32(r)) {
		return &larderv1.Value{}
	}
	elems := func() (int, int) {
		from := 0
		for _, l := range c.GetListLengths()[:r] {
			from += int(l)
		}
		return from, from + int(c.GetListLengths()[r])
	}
	switch c.GetType() {
	case larderv1.ValueType_VALUE_TYPE_INT64:
		return &larderv1.Value{Kind: &larderv1.Value_Int64Value{Int64Value: c.GetInt64Values()[r]}}
	case larderv1.ValueType_VALUE_TYPE_FLOAT64:
		return &larderv1.Value{Kind: &larderv1.Value_Float64Value{Float64Value: c.GetFloat64Values()[r]}}
	case larderv1.ValueType_VALUE_TYPE_FLOAT32:
		return &larderv1.Value{Kind: &larderv1.Value_Float32Value{Float32Value: c.GetFloat32Values()[r]}}
	case larderv1.ValueType_VALUE_TYPE_BOOL:
		return &larderv1.Value{Kind: &larderv1.Value_BoolValue{BoolValue: c.GetBoolValues()[r]}}
	case larderv1.ValueType_VALUE_TYPE_STRING:
		return &larderv1.Value{Kind: &larderv1.Value_StringValue{StringValue: c.GetStringValues()[r]}}
	case larderv1.ValueType_VALUE_TYPE_BYTES:
		return &larderv1.Value{Kind: &larderv1.Value_BytesValue{BytesValue: c.GetBytesValues()[r]}}
	case larderv1.ValueType_VALUE_TYPE_FLOAT32_VECTOR:
		a, b := elems()
		return &larderv1.Value{Kind: &larderv1.Value_Float32VectorValue{Float32VectorValue: &larderv1.FloatVector{Values: c.GetFloat32VectorValues()[a:b]}}}
	case larderv1.ValueType_VALUE_TYPE_INT64_LIST:
		a, b := elems()
		return &larderv1.Value{Kind: &larderv1.Value_Int64ListValue{Int64ListValue: &larderv1.Int64List{Values: c.GetInt64ListValues()[a:b]}}}
	case larderv1.ValueType_VALUE_TYPE_STRING_LIST:
		a, b := elems()
		return &larderv1.Value{Kind: &larderv1.Value_StringListValue{StringListValue: &larderv1.StringList{Values: c.GetStringListValues()[a:b]}}}
	}
	return &larderv1.Value{}
}

// checkFeatures compares every accessor of f with resp, read field by
// field.
func checkFeatures(t *testing.T, f *client.Features, resp *larderv1.GetFeaturesResponse) {
	t.Helper()
	if f.Rows() != int(resp.GetRowCount()) || f.Columns() != len(resp.GetColumns()) {
		t.Fatalf("%d rows × %d columns, want %d × %d", f.Rows(), f.Columns(), resp.GetRowCount(), len(resp.GetColumns()))
	}
	for ci, c := range resp.GetColumns() {
		view := resp.GetViews()[c.GetView()]
		if f.Name(ci) != c.GetName() || f.Type(ci) != c.GetType() || f.View(ci) != view.GetView() || f.Generation(ci) != resp.GetGenerations()[c.GetView()].GetGeneration() {
			t.Fatalf("column %d: %q %s %q %d, want %q %s %q", ci, f.Name(ci), f.Type(ci), f.View(ci), f.Generation(ci), c.GetName(), c.GetType(), view.GetView())
		}
		if i, ok := f.Column(c.GetName()); !ok || resp.GetColumns()[i].GetName() != c.GetName() || i > ci {
			t.Fatalf("Column(%q) = %d, %v", c.GetName(), i, ok)
		}
		for r := range f.Rows() {
			if f.Status(ci, r) != view.GetStatuses()[r] {
				t.Fatalf("column %d row %d: status %s, want %s", ci, r, f.Status(ci, r), view.GetStatuses()[r])
			}
			if found := f.Found(ci, r); found && !f.EventTime(ci, r).Equal(time.UnixMicro(view.GetEventTimeMicros()[r])) {
				t.Fatalf("column %d row %d: event time %s", ci, r, f.EventTime(ci, r))
			}
			want := wantValue(c, r)
			if got := f.Value(ci, r); !proto.Equal(got, want) {
				t.Fatalf("column %d (%s) row %d: %v, want %v", ci, c.GetType(), r, got, want)
			}
			if f.IsNull(ci, r) != (want.GetKind() == nil) {
				t.Fatalf("column %d row %d: null %v", ci, r, f.IsNull(ci, r))
			}
			// The accessors of other types panic.
			if c.GetType() != larderv1.ValueType_VALUE_TYPE_FLOAT64 && panics(func() { f.Float64(ci, r) }) == "" ||
				c.GetType() != larderv1.ValueType_VALUE_TYPE_STRING && panics(func() { f.String(ci, r) }) == "" ||
				c.GetType() != larderv1.ValueType_VALUE_TYPE_INT64_LIST && panics(func() { f.Int64List(ci, r) }) == "" {
				t.Fatalf("column %d (%s) row %d: an accessor of another type did not panic", ci, c.GetType(), r)
			}
		}
	}
}

// TestDecodeFeatures decodes random responses, as the server encodes them
// and as other encoders may, and checks every accessor against the
// message, and Response against the message.
func TestDecodeFeatures(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		resp := randomResponse(rng)
		data, err := proto.Marshal(resp)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range [][]byte{data, reencode(t, data)} {
			f, err := client.DecodeFeatures(b)
			if err != nil {
				t.Fatalf("% x: %v", b, err)
			}
			clear(b) // a Features does not refer to the bytes
			checkFeatures(t, f, resp)
		}
		f, err := client.DecodeFeatures(data2(t, resp))
		if err != nil {
			t.Fatal(err)
		}
		// Response builds the message from the columns: a column of a type
		// this client does not know comes back without its null rows.
		want := proto.Clone(resp).(*larderv1.GetFeaturesResponse)
		for _, c := range want.GetColumns() {
			if c.GetType() == larderv1.ValueType_VALUE_TYPE_UNSPECIFIED || c.GetType() > larderv1.ValueType_VALUE_TYPE_STRING_LIST {
				c.NullRows = nil
			}
		}
		if !proto.Equal(f.Response(), want) {
			t.Fatalf("Response() = %v, want %v", f.Response(), want)
		}
		if f, err := client.NewFeatures(resp); err != nil || f.Response() != resp {
			t.Fatalf("NewFeatures: %v", err)
		} else {
			checkFeatures(t, f, resp)
		}
	}
}

func data2(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDecodeFeaturesMalformed cuts and mutates encoded responses: decoding
// never panics, and where the bytes are still a response that holds
// together, DecodeFeatures reads what the message holds.
func TestDecodeFeaturesMalformed(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 5000 {
		data := data2(t, randomResponse(rng))
		if len(data) == 0 {
			continue
		}
		switch rng.IntN(3) {
		case 0:
			data = data[:rng.IntN(len(data))]
		case 1:
			data[rng.IntN(len(data))] ^= byte(1 << rng.IntN(8))
		case 2:
			data[rng.IntN(len(data))] = byte(rng.IntN(256))
		}
		decodeMalformed(t, data)
	}
}

// TestDecodeFeaturesLyingRowCount checks that a row_count far above what
// the bytes hold is refused, or read, without allocating for it.
func TestDecodeFeaturesLyingRowCount(t *testing.T) {
	huge := &larderv1.GetFeaturesResponse{RowCount: math.MaxInt32,
		Views:   []*larderv1.ViewRows{{View: "v", Statuses: []larderv1.FeatureStatus{1}, EventTimeMicros: []int64{1}}},
		Columns: []*larderv1.FeatureColumn{{Name: "v:x", Type: 99, NullRows: []int32{0}}}}
	allocs := testing.AllocsPerRun(10, func() {
		if _, err := client.DecodeFeatures(data2(t, huge)); err == nil {
			t.Fatal("a response of 2^31-1 rows whose view holds 1 decoded")
		}
	})
	if allocs > 50 {
		t.Errorf("%v allocations", allocs)
	}
	huge.Views, huge.Columns = nil, nil
	f, err := client.DecodeFeatures(data2(t, huge))
	if err != nil || f.Rows() != math.MaxInt32 || f.Columns() != 0 {
		t.Fatalf("%v", err)
	}
}

// decodeMalformed decodes data, and when the message decodes and holds
// together, checks the Features against it.
func decodeMalformed(t *testing.T, data []byte) {
	t.Helper()
	f, err := client.DecodeFeatures(data)
	var resp larderv1.GetFeaturesResponse
	if proto.Unmarshal(data, &resp) != nil || !wellFormed(&resp) {
		return
	}
	if err != nil {
		t.Fatalf("% x: %v, for a response that holds together:\n%v", data, err, &resp)
	}
	checkFeatures(t, f, &resp)
}

// wellFormed reports whether resp holds together: what checkFeatures
// needs to read it.
func wellFormed(resp *larderv1.GetFeaturesResponse) bool {
	rows := int(resp.GetRowCount())
	if rows < 0 || len(resp.GetGenerations()) < len(resp.GetViews()) {
		return false
	}
	for _, v := range resp.GetViews() {
		if len(v.GetStatuses()) != rows || len(v.GetEventTimeMicros()) != rows {
			return false
		}
	}
	for _, c := range resp.GetColumns() {
		if c.GetView() < 0 || int(c.GetView()) >= len(resp.GetViews()) {
			return false
		}
		for _, r := range c.GetNullRows() {
			if r < 0 || int(r) >= rows {
				return false
			}
		}
		n, elems := 0, -1
		switch c.GetType() {
		case larderv1.ValueType_VALUE_TYPE_INT64:
			n = len(c.GetInt64Values())
		case larderv1.ValueType_VALUE_TYPE_FLOAT64:
			n = len(c.GetFloat64Values())
		case larderv1.ValueType_VALUE_TYPE_FLOAT32:
			n = len(c.GetFloat32Values())
		case larderv1.ValueType_VALUE_TYPE_BOOL:
			n = len(c.GetBoolValues())
		case larderv1.ValueType_VALUE_TYPE_STRING:
			n = len(c.GetStringValues())
		case larderv1.ValueType_VALUE_TYPE_BYTES:
			n = len(c.GetBytesValues())
		case larderv1.ValueType_VALUE_TYPE_FLOAT32_VECTOR:
			n, elems = len(c.GetListLengths()), len(c.GetFloat32VectorValues())
		case larderv1.ValueType_VALUE_TYPE_INT64_LIST:
			n, elems = len(c.GetListLengths()), len(c.GetInt64ListValues())
		case larderv1.ValueType_VALUE_TYPE_STRING_LIST:
			n, elems = len(c.GetListLengths()), len(c.GetStringListValues())
		default:
			n = rows
		}
		if n != rows {
			return false
		}
		if elems >= 0 {
			sum := 0
			for _, l := range c.GetListLengths() {
				if l < 0 {
					return false
				}
				sum += int(l)
			}
			if sum != elems {
				return false
			}
		}
	}
	return true
}

// FuzzDecodeFeatures decodes any bytes: never a panic, and a response that
// holds together reads as its message.
func FuzzDecodeFeatures(f *testing.F) {
	rng := rand.New(rand.NewPCG(5, 6))
	for range 20 {
		data := data2(&testing.T{}, randomResponse(rng))
		f.Add(data)
		f.Add(reencode(f, data))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		decodeMalformed(t, data)
	})
}

// TestDecodeFeaturesManyNewNames decodes a response of 4,000 columns whose
// names no decode has seen: the names are kept with one copy of the map of
// kept names, not one per name (which took hundreds of MB, and as many ms).
func TestDecodeFeaturesManyNewNames(t *testing.T) {
	resp := &larderv1.GetFeaturesResponse{RowCount: 1, Views: []*larderv1.ViewRows{{View: "wide", Statuses: []larderv1.FeatureStatus{1}, EventTimeMicros: []int64{1}}},
		Generations: []*larderv1.ViewGeneration{{View: "wide", Generation: 1}}}
	for i := range 4000 {
		resp.Columns = append(resp.Columns, &larderv1.FeatureColumn{Name: fmt.Sprintf("wide:many_new_names_%04d", i), Type: larderv1.ValueType_VALUE_TYPE_FLOAT64, Float64Values: []float64{float64(i)}})
	}
	data := data2(t, resp)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f, err := client.DecodeFeatures(data)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 32<<20 {
		t.Errorf("decoding 4,000 new names allocated %d MB", got>>20)
	}
	if i, ok := f.Column("wide:many_new_names_3999"); !ok || f.Float64(i, 0) != 3999 {
		t.Errorf("column 3999: %d, %v", i, ok)
	}
}
