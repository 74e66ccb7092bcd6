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
