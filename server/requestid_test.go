package server_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/larder-dev/larder"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
	"github.com/larder-dev/larder/server"
)

// brokenStore fails every read of the view named broken with an error the
// server cannot classify, as a bug would: INTERNAL.
type brokenStore struct {
	larder.FeatureStore
	broken string
}

func (b brokenStore) Read(ctx context.Context, lookups []*larder.Lookup) error {
	for _, l := range lookups {
		if l.View.Name == b.broken {
			return errors.New("corrupt row")
		}
	}
	return b.FeatureStore.Read(ctx, lookups)
}

// madeID is the form of a request id the server makes.
var madeID = regexp.MustCompile(`^[0-9a-f]{16}$`)

// TestRequestID checks that every response carries a request id in its
// header metadata, the caller's when it sent a sane one, errors included,
// and that the log lines of the request carry the same id.
func TestRequestID(t *testing.T) {
	f := newFixture(t, fixtureConfig{wrap: func(fs larder.FeatureStore) larder.FeatureStore {
		return brokenStore{FeatureStore: fs, broken: "user_stats"}
	}})
	get := func(features ...string) func(ctx context.Context, opts ...grpc.CallOption) error {
		return func(ctx context.Context, opts ...grpc.CallOption) error {
			_, err := f.client.GetFeatures(ctx, &larderv1.GetFeaturesRequest{Keys: intKeys(1), Features: features}, opts...)
			return err
		}
	}
	tests := []struct {
		name string
		sent string // the caller's id; none when empty
		call func(ctx context.Context, opts ...grpc.CallOption) error
		code codes.Code
		kept bool // whether the caller's id is the response's
		// log is the message and level of a line the request must log.
		log string
	}{
		{name: "made", call: get("user_profile:age"), log: "level=DEBUG msg=request"},
		{name: "kept", sent: "3f2c9a1e-77b0-4c1e-9d2a-0c6b1d8e5f10", call: get("user_profile:age"), kept: true,
			log: "level=DEBUG msg=request"},
		{name: "kept, refused", sent: "client.req:42", call: get("nope:x"), code: codes.InvalidArgument, kept: true,
			log: "level=DEBUG msg=request"},
		{name: "replaced: a space", sent: "two words", call: get("user_profile:age")},
		{name: "replaced: too long", sent: strings.Repeat("a", 129), call: get("user_profile:age")},
		{name: "server failure", call: get("user_stats:clicks"), code: codes.Internal, log: "level=WARN msg=request"},
		{name: "Rank, server failure", sent: "rank-1", kept: true, code: codes.Internal,
			call: func(ctx context.Context, opts ...grpc.CallOption) error {
				// reco reads user_stats, which the broken store fails.
				_, err := f.client.Rank(ctx, rankRequest("i1"), opts...)
				return err
			}, log: "level=WARN msg=request"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			if tc.sent != "" {
				ctx = metadata.AppendToOutgoingContext(ctx, server.RequestIDHeader, tc.sent)
			}
			var header metadata.MD
			err := tc.call(ctx, grpc.Header(&header))
			if tc.code != codes.OK {
				wantCode(t, err, tc.code)
			} else if err != nil {
				t.Fatal(err)
			}
			ids := header.Get(server.RequestIDHeader)
			if len(ids) != 1 {
				t.Fatalf("header %s = %q, want one id", server.RequestIDHeader, ids)
			}
			id := ids[0]
			switch {
			case tc.kept && id != tc.sent:
				t.Errorf("request id %q, want the caller's %q", id, tc.sent)
			case !tc.kept && !madeID.MatchString(id):
				t.Errorf("request id %q, want 16 hexadecimal digits made by the server", id)
			}
			if tc.log == "" {
				return
			}
			var line string
			for l := range strings.Lines(f.logs.String()) {
				if strings.Contains(l, "request_id="+id) && strings.Contains(l, tc.log) {
					line = l
				}
			}
			if line == "" {
				t.Fatalf("no %q line with request_id=%s in the logs:\n%s", tc.log, id, f.logs.String())
			}
			if want := "code=" + tc.code.String(); !strings.Contains(line, want) {
				t.Errorf("log line %q does not contain %q", line, want)
			}
		})
	}
}

// TestRequestIDDegraded checks that the warning of a Rank served without
// its model names the request.
func TestRequestIDDegraded(t *testing.T) {
	f := newFixture(t, fixtureConfig{models: map[string]server.Model{"reco": failingModel{}}})
	ctx := metadata.AppendToOutgoingContext(context.Background(), server.RequestIDHeader, "degraded-7")
	var header metadata.MD
	resp, err := f.client.Rank(ctx, rankRequest("i1", "i2"), grpc.Header(&header))
	if err != nil || !resp.GetDegraded() {
		t.Fatalf("Rank = %v, degraded %v; want a degraded answer", err, resp.GetDegraded())
	}
	if got := header.Get(server.RequestIDHeader); len(got) != 1 || got[0] != "degraded-7" {
		t.Errorf("header %s = %q, want [degraded-7]", server.RequestIDHeader, got)
	}
	if !regexp.MustCompile(`msg="rank served without the model".*request_id=degraded-7`).MatchString(f.logs.String()) {
		t.Errorf("no degraded warning with request_id=degraded-7 in the logs:\n%s", f.logs.String())
	}
}

// TestHTTPRequestID checks the request ids of the HTTP/JSON gateway: every
// answer, errors included, carries one in X-Request-Id and, the same, in
// Grpc-Metadata-X-Request-Id; it is the caller's X-Request-Id (or, without
// it, Grpc-Metadata-X-Request-Id) when that is sane, as over gRPC, and one
// the server made otherwise; and the log lines of a request that reached
// the gRPC server carry the same id.
func TestHTTPRequestID(t *testing.T) {
	f := newFixture(t, fixtureConfig{wrap: func(fs larder.FeatureStore) larder.FeatureStore {
		return brokenStore{FeatureStore: fs, broken: "user_stats"}
	}})
	logs := &syncBuffer{}
	gw, err := server.NewHTTP(f.svc, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Close() })
	web := httptest.NewServer(gw)
	t.Cleanup(web.Close)

	const (
		age    = `{"keys":[{"int64_value":1}],"features":["user_profile:age"]}`
		nope   = `{"keys":[{"int64_value":1}],"features":["nope:x"]}`
		broken = `{"keys":[{"int64_value":1}],"features":["user_stats:clicks"]}`
	)
	tests := []struct {
		name   string
		path   string
		body   string
		header []string // name, value pairs sent
		status int
		kept   string // the caller's id the answer must carry; a made one when empty
		// log is the level and message of a line the request must log with
		// its id, and code its gRPC code there; no line is looked for when
		// log is empty.
		log  string
		code codes.Code
	}{
		{name: "made", path: "/v1/features", body: age, status: http.StatusOK, log: "level=DEBUG msg=request"},
		{name: "kept", path: "/v1/features", body: age, header: []string{"X-Request-Id", "3f2c9a1e-77b0-4c1e-9d2a-0c6b1d8e5f10"},
			status: http.StatusOK, kept: "3f2c9a1e-77b0-4c1e-9d2a-0c6b1d8e5f10", log: "level=DEBUG msg=request"},
		{name: "kept, ListViews", path: "/v1/views", body: `{}`, header: []string{"X-Request-Id", "client.req:42"},
			status: http.StatusOK, kept: "client.req:42", log: "level=DEBUG msg=request"},
		{name: "kept from Grpc-Metadata-X-Request-Id", path: "/v1/features", body: age,
			header: []string{"Grpc-Metadata-X-Request-Id", "01JDZ8Q3V6W5X4Y3Z2A1B0C9D8"},
			status: http.StatusOK, kept: "01JDZ8Q3V6W5X4Y3Z2A1B0C9D8", log: "level=DEBUG msg=request"},
		{name: "X-Request-Id first", path: "/v1/features", body: age,
			header: []string{"Grpc-Metadata-X-Request-Id", "second", "X-Request-Id", "first"},
			status: http.StatusOK, kept: "first", log: "level=DEBUG msg=request"},
		{name: "kept, refused", path: "/v1/features", body: nope, header: []string{"X-Request-Id", "refused-1"},
			status: http.StatusBadRequest, kept: "refused-1", log: "level=DEBUG msg=request", code: codes.InvalidArgument},
		{name: "made, refused", path: "/v1/features", body: nope,
			status: http.StatusBadRequest, log: "level=DEBUG msg=request", code: codes.InvalidArgument},
		{name: "replaced: a space", path: "/v1/features", body: age, header: []string{"X-Request-Id", "two words"},
			status: http.StatusOK, log: "level=DEBUG msg=request"},
		{name: "replaced: too long", path: "/v1/features", body: age, header: []string{"X-Request-Id", strings.Repeat("a", 129)},
			status: http.StatusOK, log: "level=DEBUG msg=request"},
		{name: "replaced: a semicolon", path: "/v1/features", body: age, header: []string{"X-Request-Id", "a;b"},
			status: http.StatusOK, log: "level=DEBUG msg=request"},
		{name: "replaced in Grpc-Metadata-X-Request-Id", path: "/v1/features", body: age,
			header: []string{"Grpc-Metadata-X-Request-Id", "a\tb"}, status: http.StatusOK, log: "level=DEBUG msg=request"},
		{name: "server failure", path: "/v1/features", body: broken, header: []string{"X-Request-Id", "broken-9"},
			status: http.StatusInternalServerError, kept: "broken-9", log: "level=WARN msg=request", code: codes.Internal},
		// Answered by the gateway before the gRPC server sees them.
		{name: "kept, not JSON", path: "/v1/features", body: `{"keys":`, header: []string{"X-Request-Id", "bad-json-3"},
			status: http.StatusBadRequest, kept: "bad-json-3"},
		{name: "made, an unknown field", path: "/v1/features", body: `{"keyz":[]}`, status: http.StatusBadRequest},
		{name: "kept, unknown path", path: "/v1/nope", body: `{}`, header: []string{"X-Request-Id", "lost-5"},
			status: http.StatusNotFound, kept: "lost-5"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, header, b := postJSONHeader(t, web.Client(), web.URL+tc.path, tc.body, tc.header...)
			if status != tc.status {
				t.Fatalf("POST %s %s: %d %s, want %d", tc.path, tc.body, status, b, tc.status)
			}
			ids := header.Values("X-Request-Id")
			if len(ids) != 1 {
				t.Fatalf("X-Request-Id %q, want one id", ids)
			}
			id := ids[0]
			switch {
			case tc.kept != "" && id != tc.kept:
				t.Errorf("request id %q, want the caller's %q", id, tc.kept)
			case tc.kept == "" && !madeID.MatchString(id):
				t.Errorf("request id %q, want 16 hexadecimal digits made by the server", id)
			}
			if got := header.Values("Grpc-Metadata-X-Request-Id"); len(got) != 1 || got[0] != id {
				t.Errorf("Grpc-Metadata-X-Request-Id %q, want [%s] as in X-Request-Id", got, id)
			}
			if tc.log == "" {
				return
			}
			var line string
			for l := range strings.Lines(logs.String()) {
				if strings.Contains(l, "request_id="+id) && strings.Contains(l, tc.log) {
					line = l
				}
			}
			if line == "" {
				t.Fatalf("no %q line with request_id=%s in the logs:\n%s", tc.log, id, logs.String())
			}
			if want := "code=" + tc.code.String(); !strings.Contains(line, want) {
				t.Errorf("log line %q does not contain %q", line, want)
			}
		})
	}
}
