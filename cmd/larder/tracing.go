package main

import (
	"context"
	"fmt"
	"runtime/debug"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/larder-dev/larder"
)

// traceSettings are serve's tracing flags. The zero value traces nothing.
type traceSettings struct {
	// otlp is the address of an OTLP gRPC collector (host:port, or a URL:
	// http:// is plaintext, https:// is TLS); empty for none.
	otlp string
	// stdout writes every span to standard error as JSON, for debugging.
	stdout bool
	// sample is the share of traces started by this server that are
	// recorded; a request whose caller's trace is sampled always is.
	sample float64
}

// on reports whether any exporter is asked for.
func (ts traceSettings) on() bool { return ts.otlp != "" || ts.stdout }

// traceFlags adds the tracing flags to serve.
func traceFlags(cmd *cobra.Command, ts *traceSettings) {
	cmd.Flags().StringVar(&ts.otlp, "trace-otlp", "", "send traces to this OTLP gRPC collector, such as 127.0.0.1:4317 (plaintext; https://HOST:PORT for TLS); the OTEL_EXPORTER_OTLP_* variables add headers and certificates")
	cmd.Flags().BoolVar(&ts.stdout, "trace-stdout", false, "write every span to standard error as JSON, for debugging")
	cmd.Flags().Float64Var(&ts.sample, "trace-sample", 1, "the share of requests traced, 0 to 1, when tracing (a request whose caller's trace is sampled is always traced)")
}

// tracing is a started tracer provider and what stops it.
type tracing struct {
	tp *sdktrace.TracerProvider
}

// newTracing starts the tracer provider ts asks for, for the server of
// project p: spans are batched to the OTLP collector and, with stdout,
// written to standard error. It returns nil without an exporter, and an
// error for a flag that cannot work. It does not wait for the collector:
// a collector that is down costs dropped spans, logged, never requests.
func (a *app) newTracing(ctx context.Context, p *larder.Project, ts traceSettings) (*tracing, error) {
	if !ts.on() {
		return nil, nil
	}
	if ts.sample <= 0 || ts.sample > 1 {
		return nil, fmt.Errorf("--trace-sample %g: want a share above 0 and at most 1, such as 0.1 for one request in ten", ts.sample)
	}
	version := "(devel)"
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		version = bi.Main.Version
	}
	// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, read after these,
	// override them.
	res, err := resource.New(ctx,
		resource.WithAttributes(
			attribute.String("service.name", "larder"),
			attribute.String("service.version", version),
			attribute.String("larder.project", p.Name)),
		resource.WithFromEnv(),
		resource.WithTelemetrySDK())
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	opts := []sdktrace.TracerProviderOption{
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ts.sample))),
	}
	if ts.otlp != "" {
		var exporter []otlptracegrpc.Option
		switch {
		case strings.HasPrefix(ts.otlp, "https://"):
			exporter = append(exporter, otlptracegrpc.WithEndpointURL(ts.otlp))
		case strings.HasPrefix(ts.otlp, "http://"):
			exporter = append(exporter, otlptracegrpc.WithEndpointURL(ts.otlp), otlptracegrpc.WithInsecure())
		case strings.Contains(ts.otlp, "://"):
			return nil, fmt.Errorf("--trace-otlp %s: want HOST:PORT, http://HOST:PORT or https://HOST:PORT", ts.otlp)
		default:
			// A bare address is a collector beside the server, in plaintext.
			exporter = append(exporter, otlptracegrpc.WithEndpoint(ts.otlp), otlptracegrpc.WithInsecure())
		}
		exp, err := otlptracegrpc.New(ctx, exporter...)
		if err != nil {
			return nil, fmt.Errorf("--trace-otlp %s: %w", ts.otlp, err)
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
	}
	if ts.stdout {
		exp, err := stdouttrace.New(stdouttrace.WithWriter(a.stderr))
		if err != nil {
			return nil, fmt.Errorf("--trace-stdout: %w", err)
		}
		// Written as each span ends: this exporter is for looking at.
		opts = append(opts, sdktrace.WithSyncer(exp))
	}
	// The SDK reports a failed export through the process's one error
	// handler; the binary owns the process, so it routes them to its log.
	logger := a.logger
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		logger.Warn("tracing: spans not exported", "err", err)
	}))
	return &tracing{tp: sdktrace.NewTracerProvider(opts...)}, nil
}

// provider returns the tracer provider for server.Config.Tracing: nil, an
// untyped nil, when t is nil.
func (t *tracing) provider() trace.TracerProvider {
	if t == nil {
		return nil
	}
	return t.tp
}

// close exports the spans still batched, for at most a few seconds, and
// stops the provider. A nil *tracing does nothing.
func (t *tracing) close(ctx context.Context) {
	if t == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = t.tp.Shutdown(ctx)
}
