package server_test

import (
	"context"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"

	"github.com/larder-dev/larder"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
	"github.com/larder-dev/larder/server"
)

// TestAdminOnItsOwnListener serves one Service behind NewFeatureGRPC and
// NewAdminGRPC on two listeners: each answers its own service and health,
// and UNIMPLEMENTED for the other's methods; the admin server recovers from
// a panic as the public one does; both drain when their context ends.
func TestAdminOnItsOwnListener(t *testing.T) {
	logs := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, nil))
	var panics atomic.Bool
	svc := newOpsService(t, newFakeModel("v1", 1), func(cfg *server.Config) {
		cfg.Logger = logger
		cfg.LoadModel = func(*larder.Ranker) (server.Model, error) {
			if panics.Load() {
				panic("loader exploded")
			}
			return newFakeModel("v2", 2), nil
		}
	})
	ctx, cancel := context.WithCancel(t.Context())
	public := serveGRPC(t, ctx, server.NewFeatureGRPC(svc, logger))
	admin := serveGRPC(t, ctx, server.NewAdminGRPC(svc, logger))
	call := t.Context()

	t.Run("public", func(t *testing.T) {
		if _, err := larderv1.NewFeatureServiceClient(public.conn).Rank(call, rankRequest("i1", "i2")); err != nil {
			t.Errorf("Rank: %v", err)
		}
		adminClient := larderv1.NewAdminServiceClient(public.conn)
		_, err := adminClient.ReloadModel(call, &larderv1.ReloadModelRequest{Ranker: "reco"})
		wantCode(t, err, codes.Unimplemented)
		_, err = adminClient.ListModels(call, &larderv1.ListModelsRequest{})
		wantCode(t, err, codes.Unimplemented)
		checkHealth(t, public.conn, larderv1.FeatureService_ServiceDesc.ServiceName, larderv1.AdminService_ServiceDesc.ServiceName)
		checkReflection(t, public.conn, larderv1.FeatureService_ServiceDesc.ServiceName, larderv1.AdminService_ServiceDesc.ServiceName)
	})

	t.Run("admin", func(t *testing.T) {
		adminClient := larderv1.NewAdminServiceClient(admin.conn)
		resp, err := adminClient.ReloadModel(call, &larderv1.ReloadModelRequest{Ranker: "reco"})
		if err != nil || resp.GetOldVersion() != "v1" || resp.GetNewVersion() != "v2" {
			t.Errorf("ReloadModel = %v, %v; want reco v1 -> v2", resp, err)
		}
		models, err := adminClient.ListModels(call, &larderv1.ListModelsRequest{})
		if err != nil || len(models.GetModels()) != 1 || models.GetModels()[0].GetVersion() != "v2" {
			t.Errorf("ListModels = %v, %v; want reco at v2", models, err)
		}
		_, err = larderv1.NewFeatureServiceClient(admin.conn).Rank(call, rankRequest("i1", "i2"))
		wantCode(t, err, codes.Unimplemented)
		checkHealth(t, admin.conn, larderv1.AdminService_ServiceDesc.ServiceName, larderv1.FeatureService_ServiceDesc.ServiceName)
		checkReflection(t, admin.conn, larderv1.AdminService_ServiceDesc.ServiceName, larderv1.FeatureService_ServiceDesc.ServiceName)
	})

	t.Run("a panic on the admin listener", func(t *testing.T) {
		panics.Store(true)
		defer panics.Store(false)
		_, err := larderv1.NewAdminServiceClient(admin.conn).ReloadModel(call, &larderv1.ReloadModelRequest{Ranker: "reco"})
		wantCode(t, err, codes.Internal)
		if log := logs.String(); !strings.Contains(log, "panic in handler") || !strings.Contains(log, "loader exploded") {
			t.Errorf("the panic is not logged:\n%s", log)
		}
		if _, err := larderv1.NewAdminServiceClient(admin.conn).ListModels(call, &larderv1.ListModelsRequest{}); err != nil {
			t.Errorf("ListModels after a panic: %v", err)
		}
	})

	cancel()
	for name, g := range map[string]*grpcRun{"public": public, "admin": admin} {
		select {
		case err := <-g.done:
			if err != nil {
				t.Errorf("Serve of the %s server returned %v, want nil", name, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("the %s server did not drain within 10s of its context ending", name)
		}
	}
}

// grpcRun is a GRPC serving on a free port, with a client connection to it.
type grpcRun struct {
	conn *grpc.ClientConn
	done chan error // Serve's result
}

// serveGRPC serves g on 127.0.0.1:0 until ctx ends, with a drain of 5s.
func serveGRPC(tb testing.TB, ctx context.Context, g *server.GRPC) *grpcRun {
	tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	r := &grpcRun{done: make(chan error, 1)}
	go func() { r.done <- g.Serve(ctx, lis, 5*time.Second) }()
	r.conn, err = grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()), server.CodecDialOption())
	if err != nil {
		tb.Fatalf("grpc.NewClient: %v", err)
	}
	tb.Cleanup(func() { r.conn.Close() })
	return r
}

// checkHealth checks that the server at conn reports itself and service as
// SERVING, and does not know absent.
func checkHealth(tb testing.TB, conn *grpc.ClientConn, service, absent string) {
	tb.Helper()
	health := healthpb.NewHealthClient(conn)
	for _, name := range []string{"", service} {
		resp, err := health.Check(tb.Context(), &healthpb.HealthCheckRequest{Service: name})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			tb.Errorf("health of %q: %v, %v; want SERVING", name, resp.GetStatus(), err)
		}
	}
	_, err := health.Check(tb.Context(), &healthpb.HealthCheckRequest{Service: absent})
	wantCode(tb, err, codes.NotFound)
}

// checkReflection checks that reflection at conn lists service and not
// absent.
func checkReflection(tb testing.TB, conn *grpc.ClientConn, service, absent string) {
	tb.Helper()
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(tb.Context())
	if err != nil {
		tb.Fatal(err)
	}
	defer func() { _ = stream.CloseSend() }()
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		tb.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		tb.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	if !slices.Contains(names, service) || slices.Contains(names, absent) {
		tb.Errorf("reflection lists %q, want %s and not %s", names, service, absent)
	}
}
