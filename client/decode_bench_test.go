package client_test

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/larder-dev/larder/client"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
)

// response100x20 is a GetFeatures response as the server builds it for
// 100 users × 20 float64 features of one view, all found.
func response100x20() *larderv1.GetFeaturesResponse {
	const rows, cols = 100, 20
	at := time.Date(2026, 11, 27, 9, 30, 0, 123456000, time.UTC)
	view := &larderv1.ViewRows{View: "user_features"}
	for r := range rows {
		view.Statuses = append(view.Statuses, larderv1.FeatureStatus_FEATURE_STATUS_PRESENT)
		view.EventTimeMicros = append(view.EventTimeMicros, at.Add(-time.Duration(r)*time.Minute).UnixMicro())
	}
	resp := &larderv1.GetFeaturesResponse{
		RowCount:    rows,
		Views:       []*larderv1.ViewRows{view},
		Generations: []*larderv1.ViewGeneration{{View: "user_features", Generation: 3}},
	}
	for c := range cols {
		col := &larderv1.FeatureColumn{Name: fmt.Sprintf("user_features:f%02d", c), Type: larderv1.ValueType_VALUE_TYPE_FLOAT64}
		for r := range rows {
			col.Float64Values = append(col.Float64Values, float64(r*cols+c)/7)
		}
		resp.Columns = append(resp.Columns, col)
	}
	return resp
}

// messages counts the messages of m, m included.
func messages(m protoreflect.Message) int {
	n := 1
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			for i := range v.List().Len() {
				n += messages(v.List().Get(i).Message())
			}
		case fd.IsMap():
		case fd.Message() != nil:
			n += messages(v.Message())
		}
		return true
	})
	return n
}

// BenchmarkDecode100x20 decodes the bytes of one GetFeatures response of
// 100 entities × 20 float64 features, as a client does: with a generic,
// reflection-based client (dynamicpb, what grpcurl, ghz and most clients
// built from the schema at run time pay), with protobuf's compiled Go
// types, with the generated vtprotobuf code, with larderv1.Codec (the
// vtprotobuf code, from gRPC's buffers) and that plus NewFeatures, and with
// DecodeFeatures, what this package's client does: the bytes straight into
// a Features, without the message. It reports the response's
// size and message count.
func BenchmarkDecode100x20(b *testing.B) { benchDecode(b, response100x20()) }

// BenchmarkDecode1x20 is BenchmarkDecode100x20 for one entity, the
// response of a call that scores one user.
func BenchmarkDecode1x20(b *testing.B) {
	full := response100x20()
	resp := &larderv1.GetFeaturesResponse{RowCount: 1, Generations: full.GetGenerations()}
	v := full.GetViews()[0]
	resp.Views = []*larderv1.ViewRows{{View: v.GetView(), Statuses: v.GetStatuses()[:1], EventTimeMicros: v.GetEventTimeMicros()[:1]}}
	for _, c := range full.GetColumns() {
		resp.Columns = append(resp.Columns, &larderv1.FeatureColumn{Name: c.GetName(), Type: c.GetType(), Float64Values: c.GetFloat64Values()[:1]})
	}
	benchDecode(b, resp)
}

func benchDecode(b *testing.B, resp *larderv1.GetFeaturesResponse) {
	data, err := proto.Marshal(resp)
	if err != nil {
		b.Fatal(err)
	}
	desc := resp.ProtoReflect().Descriptor()
	count := messages(resp.ProtoReflect())
	report := func(b *testing.B) {
		b.ReportMetric(float64(len(data)), "bytes/resp")
		b.ReportMetric(float64(count), "msgs/resp")
	}
	b.Run("dynamicpb", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m := dynamicpb.NewMessage(desc)
			if err := proto.Unmarshal(data, m); err != nil {
				b.Fatal(err)
			}
		}
		report(b)
	})
	b.Run("compiled", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var m larderv1.GetFeaturesResponse
			if err := proto.Unmarshal(data, &m); err != nil {
				b.Fatal(err)
			}
		}
		report(b)
	})
	b.Run("vtproto", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var m larderv1.GetFeaturesResponse
			if err := m.UnmarshalVT(data); err != nil {
				b.Fatal(err)
			}
		}
		report(b)
	})
	codec := func() (*larderv1.GetFeaturesResponse, error) {
		var m larderv1.GetFeaturesResponse
		return &m, larderv1.Codec{}.Unmarshal(mem.BufferSlice{mem.SliceBuffer(data)}, &m)
	}
	b.Run("Codec", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := codec(); err != nil {
				b.Fatal(err)
			}
		}
		report(b)
	})
	b.Run("DecodeFeatures", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := client.DecodeFeatures(data); err != nil {
				b.Fatal(err)
			}
		}
		report(b)
	})
	b.Run("Codec+Features", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m, err := codec()
			if err != nil {
				b.Fatal(err)
			}
			if _, err := client.NewFeatures(m); err != nil {
				b.Fatal(err)
			}
		}
		report(b)
	})
}

// mixedResponse is a response of 100 rows with one column of each type
// the accessor benchmarks read: int64, float64, string and float32_vector
// (of 8 elements).
func mixedResponse() *larderv1.GetFeaturesResponse {
	const rows = 100
	view := &larderv1.ViewRows{View: "user_features"}
	ints := &larderv1.FeatureColumn{Name: "user_features:age", Type: larderv1.ValueType_VALUE_TYPE_INT64}
	floats := &larderv1.FeatureColumn{Name: "user_features:score", Type: larderv1.ValueType_VALUE_TYPE_FLOAT64}
	strs := &larderv1.FeatureColumn{Name: "user_features:country", Type: larderv1.ValueType_VALUE_TYPE_STRING}
	vecs := &larderv1.FeatureColumn{Name: "user_features:embedding", Type: larderv1.ValueType_VALUE_TYPE_FLOAT32_VECTOR}
	for r := range rows {
		view.Statuses = append(view.Statuses, larderv1.FeatureStatus_FEATURE_STATUS_PRESENT)
		view.EventTimeMicros = append(view.EventTimeMicros, int64(r))
		ints.Int64Values = append(ints.Int64Values, int64(r))
		floats.Float64Values = append(floats.Float64Values, float64(r)/7)
		strs.StringValues = append(strs.StringValues, "nl")
		vecs.ListLengths = append(vecs.ListLengths, 8)
		for e := range 8 {
			vecs.Float32VectorValues = append(vecs.Float32VectorValues, float32(r*8+e))
		}
	}
	return &larderv1.GetFeaturesResponse{
		RowCount:    rows,
		Views:       []*larderv1.ViewRows{view},
		Generations: []*larderv1.ViewGeneration{{View: "user_features", Generation: 1}},
		Columns:     []*larderv1.FeatureColumn{ints, floats, strs, vecs},
	}
}

// BenchmarkAccessors reads every value of a decoded response with the
// typed accessors of Features and of Row, as a service builds its model's
// input: 100 rows × 20 float64 columns, and 100 rows of an int64, a
// string and a float32_vector column. The accessors allocate nothing.
func BenchmarkAccessors(b *testing.B) {
	decode := func(b *testing.B, resp *larderv1.GetFeaturesResponse) *client.Features {
		b.Helper()
		data, err := proto.Marshal(resp)
		if err != nil {
			b.Fatal(err)
		}
		f, err := client.DecodeFeatures(data)
		if err != nil {
			b.Fatal(err)
		}
		return f
	}
	wide, mixed := decode(b, response100x20()), decode(b, mixedResponse())
	var sink float64
	b.Run("Float64", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for col := range wide.Columns() {
				for row := range wide.Rows() {
					sink += wide.Float64(col, row)
				}
			}
		}
	})
	b.Run("Row.Float64", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for _, r := range wide.All() {
				for col := range wide.Columns() {
					sink += r.Float64(col)
				}
			}
		}
	})
	b.Run("Int64+String+Float32Vector", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for row := range mixed.Rows() {
				sink += float64(mixed.Int64(0, row)) + float64(len(mixed.String(2, row))) + float64(mixed.Float32Vector(3, row)[7])
			}
		}
	})
	if sink == 1 {
		b.Log(sink) // keeps the reads
	}
}
