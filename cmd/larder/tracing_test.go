package main

import (
	"context"
	"encoding/json"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/larder-dev/larder/demo"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
	"github.com/larder-dev/larder/redistest"
)

// collector is an OTLP gRPC trace receiver that keeps the names of the
// spans it is sent, with the service.name of their resource.
type collector struct {
	coltracepb.UnimplementedTraceServiceServer
	addr string

	mu      sync.Mutex
	spans   []string
	service string
}

func startCollector(tb testing.TB) *collector {
	tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	c := &collector{addr: lis.Addr().String()}
	s := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(s, c)
	go func() { _ = s.Serve(lis) }()
	tb.Cleanup(s.Stop)
	return c
}

func (c *collector) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		for _, a := range rs.GetResource().GetAttributes() {
			if a.GetKey() == "service.name" {
				c.service = a.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				c.spans = append(c.spans, s.GetName())
			}
		}
	}
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func (c *collector) received() (spans []string, service string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.spans), c.service
}

// TestServeTracesAndJSONLogs serves the demo with --trace-otlp to a
// collector, --trace-stdout and JSON logs at level debug, ranks once with a
// request id, and checks the response's id, the JSON log line of the
// request (with its id and trace), the spans written to standard error, and
// the spans the collector has once serve has stopped.
func TestServeTracesAndJSONLogs(t *testing.T) {
	t.Parallel()
	ds, config := demoProject(t)
	redis := redistest.Start(t)
	mustSucceed(t, larderAt(t, t.Context(), t0, "--redis", redis.Addr, "-c", config, "materialize"), "materialize")
	col := startCollector(t)
	srv := startServe(t, "--redis", redis.Addr, "-c", config, "--log-level", "debug", "--log-format", "json",
		"serve", "--listen", "127.0.0.1:0", "--trace-otlp", col.addr, "--trace-stdout")

	conn, err := grpc.NewClient(srv.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	items := ds.SampleItems(5)
	req := &larderv1.RankRequest{Ranker: demo.RankerName, ContextKey: int64Key(ds.SampleUsers(1)[0]), TopK: 3,
		RequestFeatures: map[string]*larderv1.Value{"hour_of_day": {Kind: &larderv1.Value_Int64Value{Int64Value: 12}}}}
	for _, it := range items {
		req.CandidateKeys = append(req.CandidateKeys, int64Key(it))
	}
	ctx := metadata.AppendToOutgoingContext(t.Context(), "x-request-id", "cli-trace-1")
	var header metadata.MD
	if _, err := larderv1.NewFeatureServiceClient(conn).Rank(ctx, req, grpc.Header(&header)); err != nil {
		t.Fatalf("Rank: %v", err)
	}
	if got := header.Get("x-request-id"); !slices.Equal(got, []string{"cli-trace-1"}) {
		t.Errorf("x-request-id %q, want [cli-trace-1]", got)
	}

	// The request's log line and its spans are written once the response
	// is sent, which may be after the client has it.
	type span struct {
		Name        string
		SpanContext struct{ TraceID string }
		Parent      struct{ SpanID string }
	}
	// Under --log-format json, every line serve writes to standard error
	// is a JSON object, those it writes for a person included.
	for l := range strings.Lines(srv.log()) {
		var obj map[string]any
		if err := json.Unmarshal([]byte(l), &obj); err != nil {
			t.Errorf("a line of standard error is not a JSON object: %q", l)
		}
	}
	if !strings.Contains(srv.log(), `"msg":"serving larder.v1.FeatureService for project shop on `) {
		t.Errorf("no record of the address serve listens on:\n%s", srv.log())
	}

	var logLine map[string]any
	spans := map[string]span{}
	waitFor(t, 10*time.Second, "the request's log line and spans", func() (struct{}, bool) {
		for l := range strings.Lines(srv.log()) {
			var obj map[string]any
			if !strings.HasPrefix(l, "{") || json.Unmarshal([]byte(l), &obj) != nil {
				continue
			}
			if obj["msg"] == "request" && obj["request_id"] == "cli-trace-1" {
				logLine = obj
			}
			var s span
			if _, ok := obj["SpanContext"]; ok && json.Unmarshal([]byte(l), &s) == nil {
				spans[s.Name] = s
			}
		}
		_, rpc := spans["larder.v1.FeatureService/Rank"]
		return struct{}{}, logLine != nil && rpc
	})
	rpc := spans["larder.v1.FeatureService/Rank"]
	for _, name := range []string{"store.Read", "model.Score"} {
		s, ok := spans[name]
		switch {
		case !ok:
			t.Errorf("no span %s written to standard error; spans: %v", name, spans)
		case s.SpanContext.TraceID != rpc.SpanContext.TraceID:
			t.Errorf("span %s is in trace %s, want the call's %s", name, s.SpanContext.TraceID, rpc.SpanContext.TraceID)
		}
	}
	for k, want := range map[string]any{"level": "DEBUG", "method": "/larder.v1.FeatureService/Rank", "code": "OK",
		"trace_id": rpc.SpanContext.TraceID} {
		if logLine[k] != want {
			t.Errorf("log line %v: %s = %v, want %v", logLine, k, logLine[k], want)
		}
	}

	// Stopping serve flushes the batched spans to the collector.
	srv.cancel()
	select {
	case code := <-srv.exit:
		srv.exit <- code
		if code != 0 {
			t.Fatalf("serve exited with %d:\n%s", code, srv.log())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop")
	}
	got, service := col.received()
	for _, name := range []string{"larder.v1.FeatureService/Rank", "store.Read", "model.Score"} {
		if !slices.Contains(got, name) {
			t.Errorf("the collector has no span %s; it has %q", name, got)
		}
	}
	if service != "larder" {
		t.Errorf("service.name %q, want larder", service)
	}
}

// TestTraceAndLogFlags checks the refusals of the tracing and log flags.
func TestTraceAndLogFlags(t *testing.T) {
	_, config := demoProject(t)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"log format", []string{"--log-format", "xml", "version"}, `--log-format "xml": want text`},
		{"no sample", []string{"-c", config, "serve", "--trace-stdout", "--trace-sample", "0"}, "--trace-sample 0: want a share above 0"},
		{"sample above 1", []string{"-c", config, "serve", "--trace-stdout", "--trace-sample", "1.5"}, "--trace-sample 1.5: want a share above 0"},
		{"otlp scheme", []string{"-c", config, "serve", "--trace-otlp", "grpc://127.0.0.1:4317"}, "--trace-otlp grpc://127.0.0.1:4317: want HOST:PORT"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := larderAt(t, t.Context(), t0, tc.args...)
			if r.code == 0 || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want a failure saying %q", r.code, r.stderr, tc.want)
			}
		})
	}
}
