package server

import (
	"context"
	"strings"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/stats"

	"github.com/larder-dev/larder"
)

// tracerName names the spans this package starts, as their instrumentation
// scope.
const tracerName = "github.com/larder-dev/larder/server"

// The names of the spans started inside a request, children of its RPC span.
const (
	// spanRead is one round trip to the online store (FeatureStore.Read).
	spanRead = "store.Read"
	// spanScore is one run of a ranker's model over a request's candidates,
	// including the wait for a batch when the ranker batches.
	spanScore = "model.Score"
)

// The attributes larder adds to its spans.
const (
	attrViews      = attribute.Key("larder.views")
	attrKeys       = attribute.Key("larder.keys")
	attrFound      = attribute.Key("larder.found")
	attrFeatures   = attribute.Key("larder.features")
	attrRanker     = attribute.Key("larder.ranker")
	attrCandidates = attribute.Key("larder.candidates")
	attrStored     = attribute.Key("larder.candidates_from")
	attrTopK       = attribute.Key("larder.top_k")
	attrModel      = attribute.Key("larder.model_version")
	attrDegraded   = attribute.Key("larder.degraded")
	attrReason     = attribute.Key("larder.degraded_reason")
	attrInputs     = attribute.Key("larder.inputs")
	attrRequestID  = attribute.Key("larder.request_id")
)

// tracingOption returns the option that gives every gRPC call a span from
// tp (otelgrpc's server stats handler), a child of the caller's span when
// the request carries a W3C traceparent. Health checks and reflection are
// left out: a load balancer's probes would drown the traces.
func tracingOption(tp trace.TracerProvider) grpc.ServerOption {
	return grpc.StatsHandler(otelgrpc.NewServerHandler(
		otelgrpc.WithTracerProvider(tp),
		otelgrpc.WithPropagators(propagation.TraceContext{}),
		// The request metrics are Prometheus's (Metrics); the handler's own
		// would only be a second copy.
		otelgrpc.WithMeterProvider(noop.NewMeterProvider()),
		otelgrpc.WithFilter(traced),
	))
}

// traced reports whether a call gets a span: not health checks, nor
// reflection.
func traced(info *stats.RPCTagInfo) bool {
	m := info.FullMethodName
	return !strings.HasPrefix(m, "/grpc.health.") && !strings.HasPrefix(m, "/grpc.reflection.")
}

// tracingStore is the Service's store when tracing is on: each Read is a
// span, a child of the request's, with the views read, the keys looked up
// and the rows found. Without tracing the store is not wrapped, so that the
// request path pays nothing for it.
type tracingStore struct {
	larder.FeatureStore
	tracer trace.Tracer
}

func (t tracingStore) Read(ctx context.Context, lookups []*larder.Lookup) error {
	views := make([]string, len(lookups))
	keys := 0
	for i, l := range lookups {
		views[i] = l.View.Name
		keys += len(l.Keys)
	}
	ctx, span := t.tracer.Start(ctx, spanRead, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attrViews.StringSlice(views), attrKeys.Int(keys)))
	defer span.End()
	err := t.FeatureStore.Read(ctx, lookups)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(otelcodes.Error, err.Error())
		return err
	}
	found := 0
	for _, l := range lookups {
		for _, f := range l.Found {
			if f {
				found++
			}
		}
	}
	span.SetAttributes(attrFound.Int(found))
	return nil
}

// traceGet adds what a GetFeatures request asked for to its RPC span.
func traceGet(ctx context.Context, keys int, lookups []*larder.Lookup, cols int) {
	views := make([]string, len(lookups))
	for i, l := range lookups {
		views[i] = l.View.Name
	}
	trace.SpanFromContext(ctx).SetAttributes(attrKeys.Int(keys), attrFeatures.Int(cols), attrViews.StringSlice(views))
}

// score runs ranker plan's model m over n candidates (see scoreModel), in a
// span of its own when tracing is on.
func (s *Service) score(ctx context.Context, plan *rankerPlan, m Model, x []float32, n int, out []float32) error {
	if s.tracer == nil {
		return scoreModel(ctx, plan.scoreTimeout, m, x, n, out)
	}
	ctx, span := s.tracer.Start(ctx, spanScore, trace.WithAttributes(
		attrRanker.String(plan.ranker.Name), attrModel.String(m.Version()),
		attrCandidates.Int(n), attrInputs.Int(len(plan.inputs))))
	defer span.End()
	err := scoreModel(ctx, plan.scoreTimeout, m, x, n, out)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(otelcodes.Error, err.Error())
	}
	return err
}

// traceRank adds what a Rank request ranked, and how, to its RPC span.
// degraded is the reason class of a degraded answer, or empty.
func traceRank(ctx context.Context, plan *rankerPlan, candidates, topK int, fromStore bool, version, degraded string) {
	attrs := []attribute.KeyValue{
		attrRanker.String(plan.ranker.Name), attrCandidates.Int(candidates), attrTopK.Int(topK),
		attrModel.String(version), attrDegraded.Bool(degraded != ""),
	}
	if fromStore {
		attrs = append(attrs, attrStored.String(plan.stored.Name))
	}
	if degraded != "" {
		attrs = append(attrs, attrReason.String(degraded))
	}
	trace.SpanFromContext(ctx).SetAttributes(attrs...)
}
