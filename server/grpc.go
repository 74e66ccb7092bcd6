package server

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"net"
	"runtime/debug"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
)

// GRPC is a gRPC server carrying larder's services (the FeatureService with
// the IngestService, the operators' services, or both), the standard health
// service and, unless the project's server.reflection is false, server
// reflection (so that grpcurl works without .proto files). The operators'
// services are the AdminService and, when the Service has a job queue
// (Config.Jobs), the JobService; every call of theirs is written to the
// audit log.
type GRPC struct {
	Server  *grpc.Server
	Health  *health.Server
	logger  *slog.Logger
	codec   *serverCodec
	load    *load
	metrics *Metrics
	// auth checks every caller; nil lets all call everything.
	auth *Auth
	// audit receives the audit lines.
	audit *slog.Logger
	// services are the names of the services it carries, for health.
	services []string
	// traced is whether the Service traces its requests.
	traced bool
	// gateway, set on the in-process server of an HTTP gateway, holds the
	// client certificates of the HTTP requests in flight (see HTTP).
	gateway *gatewayPeers
}

// setStatus sets the serving status of the whole server and of each of
// its services. After Serve began draining, the health server ignores it.
func (g *GRPC) setStatus(status healthpb.HealthCheckResponse_ServingStatus) {
	g.Health.SetServingStatus("", status)
	for _, name := range g.services {
		g.Health.SetServingStatus(name, status)
	}
}

// NewGRPC returns a gRPC server for svc carrying the FeatureService, the
// IngestService, the AdminService and, when svc has a job queue, the
// JobService. A panic in a
// handler becomes an INTERNAL error for that request, logged with its stack;
// the process keeps serving. Every request has an id, returned in the
// RequestIDHeader of its response and logged with each line the request
// writes; its outcome is logged too (see logRequest).
func NewGRPC(svc *Service, logger *slog.Logger, opts ...grpc.ServerOption) *GRPC {
	return newGRPC(svc, logger, services{feature: true, admin: true}, opts)
}

// NewFeatureGRPC is NewGRPC without the operators' services (AdminService,
// JobService), whose methods it answers with UNIMPLEMENTED: for the public
// listener when NewAdminGRPC serves them on a listener of their own. It
// carries the IngestService, whose Push needs the write role.
func NewFeatureGRPC(svc *Service, logger *slog.Logger, opts ...grpc.ServerOption) *GRPC {
	return newGRPC(svc, logger, services{feature: true}, opts)
}

// NewAdminGRPC is NewGRPC with the operators' services alone (the
// AdminService and, when svc has a job queue, the JobService; besides health
// and reflection), with the same codec, options and interceptors, so that
// model reloads and jobs can be served on an address only operators reach.
func NewAdminGRPC(svc *Service, logger *slog.Logger, opts ...grpc.ServerOption) *GRPC {
	return newGRPC(svc, logger, services{admin: true}, opts)
}

// services says which of larder's services a GRPC carries: admin stands
// for the operators' services.
type services struct{ feature, admin bool }

// newGRPC returns a gRPC server for svc carrying the services in which.
func newGRPC(svc *Service, logger *slog.Logger, which services, opts []grpc.ServerOption) *GRPC {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	g := &GRPC{Health: health.NewServer(), logger: withRequest(logger), codec: &serverCodec{}, load: svc.load, metrics: svc.metrics,
		auth: svc.auth, audit: svc.audit, traced: svc.tracing != nil}
	// The metrics wrap unary, so that they also count the requests it
	// refuses and those whose panic it turns into INTERNAL; identify wraps
	// both, so that every request has an id.
	unary := grpc.UnaryServerInterceptor(g.unary)
	if svc.metrics != nil {
		unary = svc.metrics.wrap(unary)
	}
	unary = g.identify(unary)
	base := append(serverOptions(g.codec), grpc.ChainUnaryInterceptor(unary))
	if svc.tracing != nil {
		base = append(base, tracingOption(svc.tracing))
	}
	if g.auth != nil {
		// Health watches and reflection are streams.
		base = append(base, grpc.ChainStreamInterceptor(g.stream))
	}
	opts = append(base, opts...)
	g.Server = grpc.NewServer(opts...)
	healthpb.RegisterHealthServer(g.Server, g.Health)
	g.Health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	if which.feature {
		larderv1.RegisterFeatureServiceServer(g.Server, svc)
		g.Health.SetServingStatus(larderv1.FeatureService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
		g.services = append(g.services, larderv1.FeatureService_ServiceDesc.ServiceName)
		// Pushes are the product's traffic too: they go where reads go,
		// and the write role keeps readers out.
		larderv1.RegisterIngestServiceServer(g.Server, &ingestServer{svc: svc})
		g.Health.SetServingStatus(larderv1.IngestService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
		g.services = append(g.services, larderv1.IngestService_ServiceDesc.ServiceName)
	}
	if which.admin {
		larderv1.RegisterAdminServiceServer(g.Server, &adminServer{svc: svc})
		g.Health.SetServingStatus(larderv1.AdminService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
		g.services = append(g.services, larderv1.AdminService_ServiceDesc.ServiceName)
	}
	if which.admin && svc.jobs != nil {
		larderv1.RegisterJobServiceServer(g.Server, &jobServer{svc: svc})
		g.Health.SetServingStatus(larderv1.JobService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
		g.services = append(g.services, larderv1.JobService_ServiceDesc.ServiceName)
	}
	if !svc.limits.NoReflection {
		reflection.Register(g.Server)
	}
	return g
}

// unary is the server's interceptor of unary requests. With Auth, a caller
// is first authenticated and its role checked against the method. A call
// of the operators' services is then written to the audit log, whatever
// its outcome. The request goes on to handle.
func (g *GRPC) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if audited(info.FullMethod) {
		return g.handleAudited(ctx, req, info, handler)
	}
	if g.auth != nil {
		if _, err := g.auth.authorize(ctx, info.FullMethod); err != nil {
			return nil, err
		}
	}
	return g.handle(ctx, req, info, handler)
}

// handleAudited handles a call of the operators' services and writes its
// audit line: who called (a token's holder or a certificate's identity, and
// the peer's address), the method and the outcome.
func (g *GRPC) handleAudited(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	start := time.Now()
	var c caller
	if g.auth == nil {
		c = peerCaller(ctx)
	} else if c, err = g.auth.authorize(ctx, info.FullMethod); err == nil {
		ctx = context.WithValue(ctx, callerKey{}, c)
	}
	if err == nil {
		resp, err = g.handle(ctx, req, info, handler)
	}
	g.audit.LogAttrs(ctx, slog.LevelInfo, "audit",
		slog.String("method", info.FullMethod),
		slog.String("caller", c.name),
		slog.String("auth", c.via),
		slog.String("role", cmp.Or(string(c.role), "none")),
		slog.String("peer", peerAddr(ctx)),
		slog.String("code", status.Code(err).String()),
		slog.Duration("duration", time.Since(start)))
	return resp, err
}

// audited reports whether the calls of method are written to the audit
// log: those of the operators' services.
func audited(method string) bool {
	return strings.HasPrefix(method, adminMethods) || strings.HasPrefix(method, jobMethods)
}

// The prefixes of the methods of the operators' services.
const (
	adminMethods = "/larder.v1.AdminService/"
	jobMethods   = "/larder.v1.JobService/"
)

// stream is the server's interceptor of streams (health watches and
// reflection), set with Auth: it authenticates the caller and checks its
// role, as unary does.
func (g *GRPC) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx := ss.Context()
	if g.gateway != nil {
		// The gateway routes no stream today; one it routed would be
		// authenticated by its request's certificate, as a unary call is.
		ctx = g.gateway.attach(ctx)
	}
	if _, err := g.auth.authorize(ctx, info.FullMethod); err != nil {
		return err
	}
	return handler(srv, ss)
}

// handle serves a request whose caller may make it. A request that could
// not be decoded is INVALID_ARGUMENT. A FeatureService request past
// server.max_concurrent_requests is shed: RESOURCE_EXHAUSTED at once. The
// others go to the handler, through recoverUnary, within the server's
// deadline (see load.deadline).
func (g *GRPC) handle(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := g.codec.decodeError(req); err != nil {
		return nil, err
	}
	if sheds(info.FullMethod) {
		if !g.load.acquire() {
			g.metrics.requestShed(info.FullMethod)
			return nil, g.load.shedErr
		}
		defer g.load.release()
	}
	ctx, cancel, setting := g.load.deadline(ctx)
	if cancel == nil {
		return g.recoverUnary(ctx, req, info, handler)
	}
	defer cancel()
	resp, err := g.recoverUnary(ctx, req, info, handler)
	return resp, passed(ctx, err, setting)
}

func (g *GRPC) recoverUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if p := recover(); p != nil {
			g.logger.ErrorContext(ctx, "panic in handler", "method", info.FullMethod, "panic", p, "stack", string(debug.Stack()))
			resp, err = nil, status.Error(codes.Internal, "internal error")
		}
	}()
	return handler(ctx, req)
}

// Serve serves on lis until ctx ends, then drains: health turns NOT_SERVING,
// new connections are refused, and requests in flight finish, for at most
// drain before they are cut off. It returns nil after a clean drain.
func (g *GRPC) Serve(ctx context.Context, lis net.Listener, drain time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- g.Server.Serve(lis) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	g.Health.Shutdown()
	stopped := make(chan struct{})
	go func() {
		g.Server.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(drain):
		g.logger.Warn("drain timed out; closing the remaining connections", "after", drain)
		g.Server.Stop()
		<-stopped
	}
	if err := <-errc; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	return nil
}
