package server_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"

	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
	"github.com/larder-dev/larder/server"
)

// wantSpan is a span expected in a request's trace: its name, the
// attributes it must carry (their values as Emit writes them), and whether
// its status is an error.
type wantSpan struct {
	name  string
	attrs map[string]string
	err   bool
}

// TestTracing checks the span tree of a traced server: each call is a span,
// the child of the caller's span named by its traceparent, with a child per
// round trip to the store and per model run, carrying what the request read
// and ranked.
func TestTracing(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	f := newFixture(t, fixtureConfig{tracing: tp})
	broken := newFixture(t, fixtureConfig{tracing: tp, models: map[string]server.Model{"reco": failingModel{}}})

	tests := []struct {
		name     string
		call     func(ctx context.Context) error
		root     wantSpan
		children []wantSpan // in the order they started
		// logged, when set, is a message the request logs, whose line
		// must name the trace and the call's span.
		logged string
		logs   *syncBuffer
	}{
		{
			name: "GetFeatures",
			call: func(ctx context.Context) error {
				_, err := f.client.GetFeatures(ctx, &larderv1.GetFeaturesRequest{
					Keys: intKeys(1, 99), Features: []string{"user_profile:age", "user_stats:clicks", "user_stats:spend"}})
				return err
			},
			root: wantSpan{name: "larder.v1.FeatureService/GetFeatures", attrs: map[string]string{
				"larder.keys": "2", "larder.features": "3", "larder.views": `["user_profile","user_stats"]`,
				"rpc.method": "larder.v1.FeatureService/GetFeatures"}},
			children: []wantSpan{{name: "store.Read", attrs: map[string]string{
				// Two views of two keys each; user 99 is in neither.
				"larder.views": `["user_profile","user_stats"]`, "larder.keys": "4", "larder.found": "2"}}},
		},
		{
			name: "Rank",
			call: func(ctx context.Context) error {
				_, err := f.client.Rank(ctx, rankRequest("i3", "i1", "i2"))
				return err
			},
			root: wantSpan{name: "larder.v1.FeatureService/Rank", attrs: map[string]string{
				"larder.ranker": "reco", "larder.candidates": "3", "larder.top_k": "2", "larder.degraded": "false",
				"larder.model_version": f.model.Version()}},
			children: []wantSpan{
				{name: "store.Read", attrs: map[string]string{
					"larder.views": `["user_profile","user_stats","item_info"]`, "larder.keys": "5", "larder.found": "5"}},
				{name: "model.Score", attrs: map[string]string{
					"larder.ranker": "reco", "larder.candidates": "3", "larder.inputs": "8", "larder.model_version": f.model.Version()}},
			},
		},
		{
			name: "Rank degraded",
			call: func(ctx context.Context) error {
				_, err := broken.client.Rank(ctx, rankRequest("i3", "i1", "i2"))
				return err
			},
			root: wantSpan{name: "larder.v1.FeatureService/Rank", attrs: map[string]string{
				"larder.ranker": "reco", "larder.candidates": "3", "larder.degraded": "true",
				"larder.degraded_reason": "model_error", "larder.model_version": "broken-1"}},
			children: []wantSpan{
				{name: "store.Read", attrs: map[string]string{"larder.keys": "5"}},
				{name: "model.Score", attrs: map[string]string{"larder.ranker": "reco", "larder.model_version": "broken-1"}, err: true},
			},
			logged: "rank served without the model", logs: broken.logs,
		},
		{
			name: "GetFeatures refused",
			call: func(ctx context.Context) error {
				_, err := f.client.GetFeatures(ctx, &larderv1.GetFeaturesRequest{Keys: intKeys(1), Features: []string{"nope:x"}})
				if err == nil {
					return fmt.Errorf("GetFeatures of an unknown view succeeded")
				}
				return nil
			},
			// Refused before reading: no child, and the code on the span.
			root: wantSpan{name: "larder.v1.FeatureService/GetFeatures", attrs: map[string]string{
				"rpc.response.status_code": "INVALID_ARGUMENT"}},
		},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// The caller's span, sent as a W3C traceparent.
			parent := trace.NewSpanContext(trace.SpanContextConfig{
				TraceID: trace.TraceID{1, byte(i + 1)}, SpanID: trace.SpanID{2, byte(i + 1)}, TraceFlags: trace.FlagsSampled})
			carrier := propagation.MapCarrier{}
			propagation.TraceContext{}.Inject(trace.ContextWithSpanContext(context.Background(), parent), carrier)
			ctx := metadata.AppendToOutgoingContext(context.Background(), "traceparent", carrier.Get("traceparent"))
			if err := tc.call(ctx); err != nil {
				t.Fatal(err)
			}

			// The call's span ends once its response is sent, which may be
			// after the client has it.
			var spans tracetest.SpanStubs
			waitUntil(t, 10*time.Second, "the call's span", func() bool {
				spans = inTrace(exp.GetSpans(), parent.TraceID())
				return slices.ContainsFunc(spans, func(s tracetest.SpanStub) bool { return s.Parent.Equal(parent.WithRemote(true)) })
			})
			var root tracetest.SpanStub
			var children tracetest.SpanStubs
			for _, s := range spans {
				switch {
				case s.Parent.SpanID() == parent.SpanID():
					root = s
				default:
					children = append(children, s)
				}
			}
			checkSpan(t, root, tc.root)
			if root.SpanKind != trace.SpanKindServer {
				t.Errorf("%s: kind %v, want server", root.Name, root.SpanKind)
			}
			slices.SortFunc(children, func(a, b tracetest.SpanStub) int { return a.StartTime.Compare(b.StartTime) })
			var names, want []string
			for _, c := range children {
				names = append(names, c.Name)
			}
			for _, w := range tc.children {
				want = append(want, w.name)
			}
			if !slices.Equal(names, want) {
				t.Fatalf("children %q, want %q", names, want)
			}
			for i, c := range children {
				if c.Parent.SpanID() != root.SpanContext.SpanID() {
					t.Errorf("%s: parent %s, want the call's span %s", c.Name, c.Parent.SpanID(), root.SpanContext.SpanID())
				}
				checkSpan(t, c, tc.children[i])
			}
			if tc.logged != "" {
				want := fmt.Sprintf("trace_id=%s span_id=%s", parent.TraceID(), root.SpanContext.SpanID())
				if !slices.ContainsFunc(slices.Collect(strings.Lines(tc.logs.String())), func(l string) bool {
					return strings.Contains(l, tc.logged) && strings.Contains(l, want)
				}) {
					t.Errorf("no line %q with %s in the logs:\n%s", tc.logged, want, tc.logs.String())
				}
			}
		})
	}
}

// inTrace returns the spans of trace id.
func inTrace(spans tracetest.SpanStubs, id trace.TraceID) tracetest.SpanStubs {
	var in tracetest.SpanStubs
	for _, s := range spans {
		if s.SpanContext.TraceID() == id {
			in = append(in, s)
		}
	}
	return in
}

// checkSpan checks span s against w.
func checkSpan(tb testing.TB, s tracetest.SpanStub, w wantSpan) {
	tb.Helper()
	if s.Name != w.name {
		tb.Errorf("span %q, want %q", s.Name, w.name)
	}
	got := map[string]string{}
	for _, kv := range s.Attributes {
		got[string(kv.Key)] = kv.Value.String()
	}
	for _, k := range slices.Sorted(maps.Keys(w.attrs)) {
		if got[k] != w.attrs[k] {
			tb.Errorf("%s: %s = %q, want %q (attributes %v)", s.Name, k, got[k], w.attrs[k], got)
		}
	}
	if isErr := s.Status.Code == otelcodes.Error; isErr != w.err {
		tb.Errorf("%s: status %v %q, want an error: %v", s.Name, s.Status.Code, s.Status.Description, w.err)
	}
}
