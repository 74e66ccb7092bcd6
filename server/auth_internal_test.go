package server

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/larder-dev/larder"
)

// TestAuthAllocs checks that authenticating a FeatureService request by its
// bearer token allocates only the copy of the token's value that gRPC's
// metadata makes.
func TestAuthAllocs(t *testing.T) {
	const token = "read-token-0123456789abcdef"
	auth, err := NewAuth([]Token{{Name: "recs", Role: larder.RoleRead, Secret: token}, {Name: "ops", Role: larder.RoleAdmin, Secret: "admin-token-0123456789abcdef"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	g := &GRPC{codec: &serverCodec{}, load: newLoad(larder.Server{MaxConcurrentRequests: 4}), auth: auth}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ctx = metadata.NewIncomingContext(ctx, metadata.Pairs("authorization", "Bearer "+token))
	handler := func(context.Context, any) (any, error) { return nil, nil }
	info := &grpc.UnaryServerInfo{FullMethod: "/larder.v1.FeatureService/GetFeatures"}
	if _, err := g.unary(ctx, nil, info, handler); err != nil {
		t.Fatalf("a request with a read token: %v", err)
	}
	if n := testing.AllocsPerRun(1000, func() { _, _ = g.unary(ctx, nil, info, handler) }); n > 1 {
		t.Errorf("%v allocations per request with a token, want at most 1", n)
	}
}

// BenchmarkAuth is the cost of authenticating a request by its token, among
// ten tokens.
func BenchmarkAuth(b *testing.B) {
	var tokens []Token
	for i := range 10 {
		tokens = append(tokens, Token{Name: "t", Role: larder.RoleRead, Secret: "token-0123456789abcdef-" + string(rune('a'+i))})
	}
	auth, err := NewAuth(tokens, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+tokens[9].Secret))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := auth.authorize(ctx, "/larder.v1.FeatureService/Rank"); err != nil {
			b.Fatal(err)
		}
	}
}
