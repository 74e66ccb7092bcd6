package server_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
	"github.com/larder-dev/larder/server"
)

// featuresResponse returns a GetFeaturesResponse of n rows, with a column
// of every type, a column of nulls, statuses and event times.
func featuresResponse(n int) *larderv1.GetFeaturesResponse {
	micros := time.Date(2026, 11, 27, 9, 30, 0, 123456000, time.UTC).UnixMicro()
	col := func(name string, t larderv1.ValueType) *larderv1.FeatureColumn {
		return &larderv1.FeatureColumn{Name: name, Type: t}
	}
	cols := []*larderv1.FeatureColumn{
		col("v:a", larderv1.ValueType_VALUE_TYPE_INT64),
		col("v:b", larderv1.ValueType_VALUE_TYPE_FLOAT64),
		col("v:c", larderv1.ValueType_VALUE_TYPE_FLOAT32),
		col("v:d", larderv1.ValueType_VALUE_TYPE_BOOL),
		col("v:e", larderv1.ValueType_VALUE_TYPE_STRING),
		col("v:f", larderv1.ValueType_VALUE_TYPE_BYTES),
		col("v:g", larderv1.ValueType_VALUE_TYPE_FLOAT32_VECTOR),
		col("v:h", larderv1.ValueType_VALUE_TYPE_INT64_LIST),
		col("v:i", larderv1.ValueType_VALUE_TYPE_STRING_LIST),
		col("v:null", larderv1.ValueType_VALUE_TYPE_FLOAT64),
	}
	view := &larderv1.ViewRows{View: "v"}
	for i := range n {
		cols[0].Int64Values = append(cols[0].Int64Values, int64(-i))
		cols[1].Float64Values = append(cols[1].Float64Values, float64(i)/3)
		cols[2].Float32Values = append(cols[2].Float32Values, float32(i)/7)
		cols[3].BoolValues = append(cols[3].BoolValues, i%2 == 0)
		cols[4].StringValues = append(cols[4].StringValues, fmt.Sprintf("s%d é", i))
		cols[5].BytesValues = append(cols[5].BytesValues, []byte{0, byte(i), 255})
		cols[6].ListLengths = append(cols[6].ListLengths, 3)
		cols[6].Float32VectorValues = append(cols[6].Float32VectorValues, 1.5, -2, float32(i))
		cols[7].ListLengths = append(cols[7].ListLengths, 3)
		cols[7].Int64ListValues = append(cols[7].Int64ListValues, -1, 0, int64(i)<<40)
		cols[8].ListLengths = append(cols[8].ListLengths, 2)
		cols[8].StringListValues = append(cols[8].StringListValues, "x", "")
		cols[9].Float64Values = append(cols[9].Float64Values, 0)
		cols[9].NullRows = append(cols[9].NullRows, int32(i))
		view.Statuses = append(view.Statuses, larderv1.FeatureStatus_FEATURE_STATUS_PRESENT)
		view.EventTimeMicros = append(view.EventTimeMicros, micros)
	}
	return &larderv1.GetFeaturesResponse{
		RowCount:    int32(n),
		Columns:     cols,
		Views:       []*larderv1.ViewRows{view},
		Generations: []*larderv1.ViewGeneration{{View: "v", Generation: 42}},
	}
}

// TestCodec checks that server.Codec writes and reads the same protobuf as
// the standard library, for larder's messages (generated code) and for
// others (the fallback), in one buffer or several, small or pooled.
func TestCodec(t *testing.T) {
	tests := []struct {
		name string
		msg  proto.Message
	}{
		{"empty response", &larderv1.GetFeaturesResponse{}},
		{"GetFeatures request", &larderv1.GetFeaturesRequest{Keys: []*larderv1.EntityKey{intKey(7), strKey("i1")}, Features: []string{"user_f:*"}}},
		{"GetFeatures response, 1 row", featuresResponse(1)},
		{"GetFeatures response, 100 rows (pooled buffer)", featuresResponse(100)},
		{"Rank request with request features", &larderv1.RankRequest{
			Ranker: "reco", ContextKey: intKey(1), CandidateKeys: strKeys("i1", "i2"), TopK: 3,
			RequestFeatures: map[string]*larderv1.Value{"hour": intVal(13), "mobile": boolVal(true), "w": f32Val(0.5)},
		}},
		{"Rank response", &larderv1.RankResponse{
			Candidates:   []*larderv1.ScoredCandidate{{Key: strKey("i2"), Score: 0.75}, {Key: strKey("i1"), Score: -1}},
			ModelVersion: "v3", Degraded: true, DegradedReason: "model timed out",
		}},
		{"health (fallback)", &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}},
	}
	codec := server.Codec{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, err := codec.Marshal(tt.msg)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			got := data.Materialize()
			data.Free()
			if want := proto.Size(tt.msg); len(got) != want {
				t.Errorf("Marshal wrote %d bytes, proto.Size is %d", len(got), want)
			}
			back := tt.msg.ProtoReflect().New().Interface()
			if err := proto.Unmarshal(got, back); err != nil {
				t.Fatalf("proto.Unmarshal of the codec's bytes: %v", err)
			}
			if !proto.Equal(back, tt.msg) {
				t.Errorf("proto.Unmarshal of the codec's bytes gave\n%v\nwant\n%v", back, tt.msg)
			}

			wire, err := proto.Marshal(tt.msg)
			if err != nil {
				t.Fatal(err)
			}
			for _, parts := range []int{1, 3} {
				decoded := tt.msg.ProtoReflect().New().Interface()
				if err := codec.Unmarshal(split(wire, parts), decoded); err != nil {
					t.Fatalf("Unmarshal of proto.Marshal's bytes in %d buffers: %v", parts, err)
				}
				if !proto.Equal(decoded, tt.msg) {
					t.Errorf("Unmarshal of proto.Marshal's bytes in %d buffers gave\n%v\nwant\n%v", parts, decoded, tt.msg)
				}
			}
		})
	}

	t.Run("bad bytes", func(t *testing.T) {
		bad := []byte{0x0a, 0x05, 'a'} // a string field of 5 bytes with only 1 left
		for _, msg := range []proto.Message{&larderv1.GetFeaturesRequest{}, &healthpb.HealthCheckRequest{}} {
			if err := codec.Unmarshal(mem.BufferSlice{mem.SliceBuffer(bad)}, msg); err == nil {
				t.Errorf("Unmarshal of truncated bytes into %T: no error", msg)
			}
		}
	})
	t.Run("not a message", func(t *testing.T) {
		if _, err := codec.Marshal(struct{}{}); err == nil {
			t.Error("Marshal of a struct{}: no error")
		}
	})
}

// split returns b in up to n buffers.
func split(b []byte, n int) mem.BufferSlice {
	var s mem.BufferSlice
	size := (len(b) + n - 1) / max(n, 1)
	for len(b) > 0 {
		k := min(size, len(b))
		s = append(s, mem.SliceBuffer(b[:k]))
		b = b[k:]
	}
	return s
}

// TestCodecInterop calls the server, which uses server.Codec, from a client
// with gRPC's standard codec and from one with server.Codec: the answers
// are the same.
func TestCodecInterop(t *testing.T) {
	f := newFixture(t, fixtureConfig{})
	plain, err := grpc.NewClient(f.conn.Target(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	clients := map[string]larderv1.FeatureServiceClient{
		"standard codec": larderv1.NewFeatureServiceClient(plain),
		"server.Codec":   f.client,
	}
	ctx := context.Background()
	var firstFeatures *larderv1.GetFeaturesResponse
	var firstRank *larderv1.RankResponse
	for name, c := range clients {
		gf, err := c.GetFeatures(ctx, &larderv1.GetFeaturesRequest{
			Keys: intKeys(1, 2, 99), Features: []string{"user_profile:*", "user_stats:*"},
		})
		if err != nil {
			t.Fatalf("%s: GetFeatures: %v", name, err)
		}
		if gf.GetRowCount() != 3 || len(gf.GetColumns()) == 0 {
			t.Fatalf("%s: GetFeatures gave %d rows: %v", name, gf.GetRowCount(), gf)
		}
		rk, err := c.Rank(ctx, &larderv1.RankRequest{
			Ranker: "reco", ContextKey: intKey(1), CandidateKeys: strKeys("i1", "i2", "i3"), TopK: 2,
			RequestFeatures: map[string]*larderv1.Value{"hour": intVal(1), "mobile": boolVal(true)},
		})
		if err != nil {
			t.Fatalf("%s: Rank: %v", name, err)
		}
		if len(rk.GetCandidates()) != 2 {
			t.Fatalf("%s: Rank gave %d candidates, want 2", name, len(rk.GetCandidates()))
		}
		if firstFeatures == nil {
			firstFeatures, firstRank = gf, rk
			continue
		}
		if !proto.Equal(gf, firstFeatures) {
			t.Errorf("GetFeatures differs between the clients:\n%v\n%v", gf, firstFeatures)
		}
		if !proto.Equal(rk, firstRank) {
			t.Errorf("Rank differs between the clients:\n%v\n%v", rk, firstRank)
		}
	}
	// Health and reflection, which have no generated vtprotobuf code, go
	// through the codec's fallback on the server.
	if _, err := healthpb.NewHealthClient(f.conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("health check: %v", err)
	}
}

// BenchmarkCodec encodes and decodes the response of a GetFeatures of 1 and
// of 100 entities × 20 float64 features (each value with a status and an
// event time) with gRPC's standard codec and with server.Codec: the work
// the server's encoding and the client's decoding do per call.
func BenchmarkCodec(b *testing.B) {
	response := func(rows int) *larderv1.GetFeaturesResponse {
		now := time.Now().UnixMicro()
		resp := &larderv1.GetFeaturesResponse{
			RowCount:    int32(rows),
			Generations: []*larderv1.ViewGeneration{{View: "user_f", Generation: 1}},
			Views:       []*larderv1.ViewRows{{View: "user_f"}},
		}
		for range rows {
			resp.Views[0].Statuses = append(resp.Views[0].Statuses, larderv1.FeatureStatus_FEATURE_STATUS_PRESENT)
			resp.Views[0].EventTimeMicros = append(resp.Views[0].EventTimeMicros, now)
		}
		for i := range benchFeatures {
			c := &larderv1.FeatureColumn{Name: fmt.Sprintf("user_f:f%02d", i), Type: larderv1.ValueType_VALUE_TYPE_FLOAT64}
			for r := range rows {
				c.Float64Values = append(c.Float64Values, float64(r)+float64(i)/100)
			}
			resp.Columns = append(resp.Columns, c)
		}
		return resp
	}
	codecs := []struct {
		name  string
		codec encoding.CodecV2
	}{
		{"standard", encoding.GetCodecV2("proto")},
		{"vtproto", server.Codec{}},
	}
	for _, rows := range []int{1, 100} {
		msg := response(rows)
		for _, c := range codecs {
			b.Run(fmt.Sprintf("%dx20/%s", rows, c.name), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					data, err := c.codec.Marshal(msg)
					if err != nil {
						b.Fatal(err)
					}
					var got larderv1.GetFeaturesResponse
					if err := c.codec.Unmarshal(data, &got); err != nil {
						b.Fatal(err)
					}
					data.Free()
				}
			})
		}
	}
}
