package server_test

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"

	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
)

// rawCodec sends and receives bytes as they are, so that a test can send a
// request that no protobuf encoder would write.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*[]byte))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}

func (rawCodec) Name() string { return "proto" }

// TestLimitUndecodable sends requests that cannot be decoded, and requests
// that decode into strings that are not UTF-8: each is INVALID_ARGUMENT,
// never INTERNAL, and the server keeps serving.
func TestLimitUndecodable(t *testing.T) {
	f := newFixture(t, fixtureConfig{})
	ctx := context.Background()
	call := func(method string, in []byte) error {
		var out []byte
		return f.conn.Invoke(ctx, method, &in, &out, grpc.ForceCodecV2(rawCodec{}))
	}
	str := func(b []byte, field protowire.Number, s string) []byte {
		return protowire.AppendString(protowire.AppendTag(b, field, protowire.BytesType), s)
	}
	// A GetFeaturesRequest with a string key, and the features asked for.
	key := func(s string) []byte {
		k := str(nil, 2, s) // EntityKey.string_value
		return protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), k)
	}
	getFeatures := func(k string, refs ...string) []byte {
		b := key(k)
		for _, r := range refs {
			b = str(b, 2, r)
		}
		return b
	}
	const (
		get  = "/larder.v1.FeatureService/GetFeatures"
		rank = "/larder.v1.FeatureService/Rank"
		list = "/larder.v1.AdminService/ListModels"
	)
	for _, tc := range []struct {
		name   string
		method string
		in     []byte
		want   []string
	}{
		{"garbage", get, []byte{0xff, 0xff, 0xff, 0xff, 0xff}, []string{"request: cannot be decoded as a larder.v1.GetFeaturesRequest"}},
		{"a length past the end", get, []byte{0x0a, 0x7f, 0x10, 0x01}, []string{"cannot be decoded as a larder.v1.GetFeaturesRequest"}},
		{"a string field as a number", rank, protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 7),
			[]string{"cannot be decoded as a larder.v1.RankRequest"}},
		{"a truncated varint", rank, []byte{0x28, 0x80}, []string{"cannot be decoded as a larder.v1.RankRequest"}},
		{"garbage to the AdminService", list, []byte{0x0f}, []string{"cannot be decoded as a larder.v1.ListModelsRequest"}},
		{"a string key that is not UTF-8", get, getFeatures("i\xff", "item_info:price"), []string{`keys[0]: string key "i\xff" is not valid UTF-8`}},
		{"a reference that is not UTF-8", get, getFeatures("i1", "item_info:pr\xc0ice"), []string{`features[0]: "item_info:pr\xc0ice" is not valid UTF-8`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantShort(t, call(tc.method, tc.in), codes.InvalidArgument, tc.want...)
		})
	}

	// A well-formed request on the same connection is served.
	in := getFeatures("i1", "item_info:price")
	if err := call(get, in); err != nil {
		t.Fatalf("a well-formed request: %v", err)
	}
	resp, err := f.client.GetFeatures(ctx, &larderv1.GetFeaturesRequest{Keys: strKeys("i1"), Features: []string{"item_info:price"}})
	if err != nil || resp.GetColumns()[0].GetFloat64Values()[0] != 3.5 {
		t.Fatalf("GetFeatures after the garbage: %v, %v", resp, err)
	}
	h, err := healthpb.NewHealthClient(f.conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health after the garbage: %v, %v", h, err)
	}
}
