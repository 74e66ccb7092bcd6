package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/retry"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"

	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
)

// Client calls a larder server's FeatureService. It is safe for concurrent
// use; a service holds one for its lifetime, and closes it at the end.
type Client struct {
	conn     *grpc.ClientConn
	features larderv1.FeatureServiceClient
	timeout  time.Duration
}

// Defaults of Dial.
const (
	// DefaultTimeout is the deadline Dial gives a call whose context has
	// none, across its retries.
	DefaultTimeout = 5 * time.Second
	// DefaultAttempts is how many times a call is tried in all when the
	// server is UNAVAILABLE, with backoff between the attempts.
	DefaultAttempts = 4
	// MaxResponseBytes is the largest response the client reads: the
	// largest a larder server answers by default (server.max_response_bytes),
	// where gRPC's own default is 4 MiB. A service that needs another
	// passes grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(n)) to
	// WithDialOptions.
	MaxResponseBytes = 64 << 20
)

// options are the settings of Dial.
type options struct {
	tls       *tls.Config
	token     string
	timeout   time.Duration
	attempts  int
	keepalive time.Duration
	extra     []grpc.DialOption
}

// An Option changes a setting of Dial.
type Option func(*options)

// WithTLS connects over TLS with cfg: its RootCAs trust the server's
// certificate (nil means the system's authorities), and its Certificates
// hold a client certificate for a server that asks for one
// (server.tls_client_ca_file). Without it the connection is plaintext.
func WithTLS(cfg *tls.Config) Option {
	return func(o *options) { o.tls = cfg }
}

// WithBearerToken presents token in the "authorization" metadata of every
// call ("Bearer TOKEN"), for a server that checks its callers
// (server.auth). Dial refuses to send it in clear text to an address that
// is not a loopback one: add WithTLS.
func WithBearerToken(token string) Option {
	return func(o *options) { o.token = token }
}

// WithTimeout sets the deadline of a call whose context has none, retries
// included; 0 leaves such calls without a deadline (the server then gives
// them server.default_deadline). The default is DefaultTimeout.
func WithTimeout(d time.Duration) Option {
	return func(o *options) { o.timeout = d }
}

// WithAttempts sets how many times a call of FeatureService is tried in
// all while the server answers UNAVAILABLE (or cannot be reached), with
// exponential backoff from 50ms up to 1s between the attempts, within the
// call's deadline. 1 turns retries off; at most 10. The default is
// DefaultAttempts. Every method of FeatureService is read-only, so a retry
// is always safe; calls of other services through Conn are not retried.
func WithAttempts(n int) Option {
	return func(o *options) { o.attempts = n }
}

// WithKeepalive sets how long a connection stays silent before the client
// pings the server to check it is still there; 0 turns pings off. The
// default, 30s, is above the 15s larder's server allows at most.
func WithKeepalive(d time.Duration) Option {
	return func(o *options) { o.keepalive = d }
}

// WithDialOptions adds gRPC dial options, after Dial's own (so they win):
// interceptors, a resolver, a stats handler. GetFeatures' reply, as an
// interceptor or a stats handler sees it, is the client's own type, which
// decodes the response straight into a Features, not a proto.Message.
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(o *options) { o.extra = append(o.extra, opts...) }
}

// Dial returns a client of the larder server at addr (host:port, or any
// target gRPC resolves). It does not connect yet: the first call does, and
// a server that cannot be reached then fails that call with UNAVAILABLE
// after its retries.
//
// By default the client encodes and decodes with larder's generated code
// (larderv1.Codec), reads responses of up to MaxResponseBytes, keeps its
// connection alive with pings every 30s,
// retries a call that fails with UNAVAILABLE up to DefaultAttempts times
// in all, and gives a call without a deadline DefaultTimeout. It returns an
// error for options that do not hold together.
func Dial(addr string, opts ...Option) (*Client, error) {
	o := options{timeout: DefaultTimeout, attempts: DefaultAttempts, keepalive: 30 * time.Second}
	for _, opt := range opts {
		opt(&o)
	}
	switch {
	case o.attempts < 1 || o.attempts > 10:
		return nil, fmt.Errorf("client: attempts %d: want 1 to 10", o.attempts)
	case o.timeout < 0:
		return nil, fmt.Errorf("client: timeout %s is negative", o.timeout)
	case o.keepalive != 0 && o.keepalive < 15*time.Second:
		return nil, fmt.Errorf("client: keepalive %s is shorter than the 15s larder's server allows; the server would close the connection", o.keepalive)
	case o.token != "" && strings.ContainsAny(o.token, " \t\r\n"):
		return nil, errors.New("client: the bearer token holds a blank or a line break; want the token alone")
	case o.token != "" && o.tls == nil && !Loopback(addr):
		return nil, fmt.Errorf("client: a bearer token would cross the network to %s in clear text: add WithTLS, or call a loopback address", addr)
	}

	creds := insecure.NewCredentials()
	if o.tls != nil {
		creds = credentials.NewTLS(o.tls)
	}
	dial := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(larderv1.Codec{}), grpc.MaxCallRecvMsgSize(MaxResponseBytes)),
		grpc.WithChainUnaryInterceptor(retryReads(o.attempts)),
	}
	if o.keepalive > 0 {
		dial = append(dial, grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: o.keepalive, Timeout: 10 * time.Second, PermitWithoutStream: true}))
	}
	if o.token != "" {
		dial = append(dial, grpc.WithPerRPCCredentials(bearer{token: o.token, secure: o.tls != nil}))
	}
	conn, err := grpc.NewClient(addr, append(dial, o.extra...)...)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	return &Client{conn: conn, features: larderv1.NewFeatureServiceClient(conn), timeout: o.timeout}, nil
}

// retryReads returns the interceptor that retries the calls of
// FeatureService on UNAVAILABLE. gRPC's own retry policy would not do: it
// never retries a call whose server sent headers, and larder's server
// sends the request id as a header with every answer, errors included.
// A call whose deadline ends while it waits for its next attempt fails
// with the last attempt's UNAVAILABLE, which says why the server was not
// reached, rather than with a bare DEADLINE_EXCEEDED.
func retryReads(attempts int) grpc.UnaryClientInterceptor {
	retrying := retry.UnaryClientInterceptor(
		retry.WithMax(uint(attempts)),
		retry.WithCodes(codes.Unavailable),
		retry.WithBackoff(retry.BackoffExponentialWithJitterBounded(50*time.Millisecond, 0.2, time.Second)),
	)
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if attempts < 2 || !strings.HasPrefix(method, "/"+larderv1.FeatureService_ServiceDesc.ServiceName+"/") {
			return invoker(ctx, method, req, reply, cc, opts...)
		}
		var last error
		record := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, opts ...grpc.CallOption) error {
			last = invoker(ctx, method, req, reply, cc, opts...)
			return last
		}
		err := retrying(ctx, method, req, reply, cc, record, opts...)
		if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) && status.Code(last) == codes.Unavailable {
			return last
		}
		return err
	}
}

// Close closes the connection. Calls in flight fail with CANCELED.
func (c *Client) Close() error { return c.conn.Close() }

// Conn returns the client's connection, for the services of the server
// that Client does not cover (IngestService, AdminService, JobService).
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// withTimeout gives ctx the client's default deadline when it has none.
func (c *Client) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok || c.timeout == 0 {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, c.timeout)
}

// GetFeatures reads features (references "view:feature" or "view:*") of
// every key, and returns them as typed columns, one row per key in order.
// Its error is the server's status (status.Code tells INVALID_ARGUMENT,
// RESOURCE_EXHAUSTED, FAILED_PRECONDITION and the others apart; see the
// service's documentation), or an error saying the response does not hold
// together.
func (c *Client) GetFeatures(ctx context.Context, keys []*larderv1.EntityKey, features ...string) (*Features, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	var reply featuresReply
	err := c.conn.Invoke(ctx, larderv1.FeatureService_GetFeatures_FullMethodName,
		&larderv1.GetFeaturesRequest{Keys: keys, Features: features}, &reply, grpc.ForceCodecV2(featuresCodec{}))
	if err != nil {
		return nil, err
	}
	if reply.err != nil {
		return nil, fmt.Errorf("client: GetFeatures response: %w", reply.err)
	}
	return reply.f, nil
}

// featuresReply receives a GetFeatures response decoded by featuresCodec.
type featuresReply struct {
	f   *Features
	err error
}

// featuresCodec is larderv1.Codec, except that it decodes a GetFeatures
// response straight into a Features (DecodeFeatures) instead of into the
// message. A response that does not hold together is left for GetFeatures
// to report, with the column or view at fault.
type featuresCodec struct{ larderv1.Codec }

func (c featuresCodec) Unmarshal(data mem.BufferSlice, v any) error {
	r, ok := v.(*featuresReply)
	if !ok {
		return c.Codec.Unmarshal(data, v)
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	r.f, r.err = DecodeFeatures(buf.ReadOnlyData())
	return nil
}

// Rank scores candidates with a ranker's online model; see
// larderv1.RankRequest for its fields. Its error is the server's status.
func (c *Client) Rank(ctx context.Context, req *larderv1.RankRequest) (*larderv1.RankResponse, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	return c.features.Rank(ctx, req)
}

// ListViews describes every view of the project, with its schema and its
// live generation. Its error is the server's status.
func (c *Client) ListViews(ctx context.Context) ([]*larderv1.ViewInfo, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	resp, err := c.features.ListViews(ctx, &larderv1.ListViewsRequest{})
	if err != nil {
		return nil, err
	}
	return resp.GetViews(), nil
}

// Int64Keys returns keys of an entity keyed by int64.
func Int64Keys(ids ...int64) []*larderv1.EntityKey {
	keys := make([]*larderv1.EntityKey, len(ids))
	for i, id := range ids {
		keys[i] = Int64Key(id)
	}
	return keys
}

// StringKeys returns keys of an entity keyed by a string.
func StringKeys(ids ...string) []*larderv1.EntityKey {
	keys := make([]*larderv1.EntityKey, len(ids))
	for i, id := range ids {
		keys[i] = StringKey(id)
	}
	return keys
}

// Int64Key returns the key of an entity keyed by int64.
func Int64Key(id int64) *larderv1.EntityKey {
	return &larderv1.EntityKey{Key: &larderv1.EntityKey_Int64Value{Int64Value: id}}
}

// StringKey returns the key of an entity keyed by a string.
func StringKey(id string) *larderv1.EntityKey {
	return &larderv1.EntityKey{Key: &larderv1.EntityKey_StringValue{StringValue: id}}
}

// Float64 returns a float64 request feature value of Rank.
func Float64(v float64) *larderv1.Value {
	return &larderv1.Value{Kind: &larderv1.Value_Float64Value{Float64Value: v}}
}

// Int64 returns an int64 request feature value of Rank.
func Int64(v int64) *larderv1.Value {
	return &larderv1.Value{Kind: &larderv1.Value_Int64Value{Int64Value: v}}
}

// String returns a string request feature value of Rank.
func String(v string) *larderv1.Value {
	return &larderv1.Value{Kind: &larderv1.Value_StringValue{StringValue: v}}
}

// Bool returns a bool request feature value of Rank.
func Bool(v bool) *larderv1.Value {
	return &larderv1.Value{Kind: &larderv1.Value_BoolValue{BoolValue: v}}
}

// Loopback reports whether addr names this machine by a loopback name or
// address, where a token in clear text stays on the machine.
func Loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// BearerToken returns credentials that present token as a bearer token
// ("authorization: Bearer TOKEN") with every call. With secure, gRPC
// refuses to send them over a connection without TLS; without it, send them
// to a Loopback address only, as Dial does.
func BearerToken(token string, secure bool) credentials.PerRPCCredentials {
	return bearer{token: token, secure: secure}
}

// bearer presents a bearer token with every call.
type bearer struct {
	token  string
	secure bool
}

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

// RequireTransportSecurity is true over TLS, so that gRPC never sends the
// token in clear; Dial allows clear text to a loopback address only.
func (b bearer) RequireTransportSecurity() bool { return b.secure }
