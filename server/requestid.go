package server

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"log/slog"
	"math/rand/v2"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// RequestIDHeader is the metadata key of a request's id. A caller may send
// one; the server keeps it when it is sane (see saneRequestID), makes one
// otherwise, and returns it in the response's header metadata, errors
// included. Every log line written while the request is handled carries it
// as request_id, so that a caller's failed call can be found in the logs.
const RequestIDHeader = "x-request-id"

// maxRequestID is the longest request id taken from a caller.
const maxRequestID = 128

type requestIDKey struct{}

// RequestID returns the id of the request ctx is the context of, or ""
// outside a request.
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// requestID returns the id the caller sent in ctx's metadata when it is
// sane, or else a new one (see keepRequestID).
func requestID(ctx context.Context) string {
	var sent string
	if v := metadata.ValueFromIncomingContext(ctx, RequestIDHeader); len(v) > 0 {
		sent = v[0]
	}
	return keepRequestID(sent)
}

// keepRequestID returns sent, a caller's request id, when it is sane, or
// else a new one: 16 random hexadecimal digits. An empty sent is no id.
func keepRequestID(sent string) string {
	if saneRequestID(sent) {
		return sent
	}
	var b [8]byte
	var h [16]byte
	binary.BigEndian.PutUint64(b[:], rand.Uint64())
	hex.Encode(h[:], b[:])
	return string(h[:])
}

// saneRequestID reports whether id may be taken from a caller: 1 to
// maxRequestID letters, digits and - _ . : / + =, which covers UUIDs, ULIDs,
// base64 and the ids proxies make, and keeps anything that could garble a
// log line out.
func saneRequestID(id string) bool {
	if len(id) == 0 || len(id) > maxRequestID {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-', c == '_', c == '.', c == ':', c == '/', c == '+', c == '=':
		default:
			return false
		}
	}
	return true
}

// identify wraps next, the server's interceptor, so that every request has
// an id: in its context (RequestID), in its response's header metadata, on
// its span when traced, and in its log lines. It then logs the request's
// outcome (see logRequest).
func (g *GRPC) identify(next grpc.UnaryServerInterceptor) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		if g.gateway != nil {
			ctx = g.gateway.attach(ctx)
		}
		id := requestID(ctx)
		ctx = context.WithValue(ctx, requestIDKey{}, id)
		// Set before the handler runs: a unary header goes out with the
		// response, or with the status of an error.
		_ = grpc.SetHeader(ctx, metadata.MD{RequestIDHeader: []string{id}})
		if g.traced {
			trace.SpanFromContext(ctx).SetAttributes(attrRequestID.String(id))
		}
		resp, err := next(ctx, req, info, handler)
		g.logRequest(ctx, info.FullMethod, start, err)
		return resp, err
	}
}

// logRequest writes the outcome of a request of method that started at
// start and returned err: at WARN when the server failed it (INTERNAL,
// UNKNOWN, DATA_LOSS), at INFO when the server could not answer in time or
// its store was unavailable (UNAVAILABLE, DEADLINE_EXCEEDED), and at DEBUG
// otherwise, so that --log-level debug shows every request.
func (g *GRPC) logRequest(ctx context.Context, method string, start time.Time, err error) {
	code := status.Code(err)
	level := slog.LevelDebug
	switch code {
	case codes.Internal, codes.Unknown, codes.DataLoss:
		level = slog.LevelWarn
	case codes.Unavailable, codes.DeadlineExceeded:
		level = slog.LevelInfo
	}
	if !g.logger.Enabled(ctx, level) {
		return
	}
	attrs := []slog.Attr{
		slog.String("method", method),
		slog.String("code", code.String()),
		slog.Duration("duration", time.Since(start)),
	}
	if err != nil {
		attrs = append(attrs, slog.String("err", status.Convert(err).Message()))
	}
	g.logger.LogAttrs(ctx, level, "request", attrs...)
}

// contextHandler is a slog.Handler that adds to each record what its
// context knows of the request: its id (request_id) and, when it is
// traced, its trace and span (trace_id, span_id), so that a log line leads
// to its trace.
type contextHandler struct{ slog.Handler }

// withRequest returns l with contextHandler over its handler, or l when it
// has it already.
func withRequest(l *slog.Logger) *slog.Logger {
	if _, ok := l.Handler().(contextHandler); ok {
		return l
	}
	return slog.New(contextHandler{l.Handler()})
}

func (h contextHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := RequestID(ctx); id != "" {
		r.AddAttrs(slog.String("request_id", id))
	}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

func (h contextHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return contextHandler{h.Handler.WithAttrs(attrs)}
}

func (h contextHandler) WithGroup(name string) slog.Handler {
	return contextHandler{h.Handler.WithGroup(name)}
}
