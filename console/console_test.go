package console_test

import (
	"context"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/console"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
)

var now = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// project is a small project: users keyed by an int64, sessions by a
// string.
func project(tb testing.TB) *larder.Project {
	tb.Helper()
	p := &larder.Project{
		Name: "shop",
		Entities: []*larder.Entity{
			{Name: "user", Key: "user_id", KeyType: larder.TypeInt64},
			{Name: "session", Key: "session_id", KeyType: larder.TypeString},
		},
		Sources: []*larder.Source{{Name: "users", Path: "u.parquet", EventTime: "ts"}, {Name: "sessions", Path: "s.parquet", EventTime: "ts"}},
		Views: []*larder.View{
			{Name: "user_profile", Kind: larder.KindLatest, Entity: "user", Source: "users", MaxAge: 24 * time.Hour,
				Features: []larder.Feature{{Name: "age", Type: larder.TypeInt64}, {Name: "country", Type: larder.TypeString}, {Name: "recent", Type: larder.TypeInt64List}}},
			{Name: "session_state", Kind: larder.KindLatest, Entity: "session", Source: "sessions",
				Features: []larder.Feature{{Name: "page", Type: larder.TypeString}}},
		},
	}
	p.SetDefaults()
	if err := p.Validate(); err != nil {
		tb.Fatal(err)
	}
	return p
}

// service answers as the gRPC service would, from fixed data: it isolates
// the console from the store, whose reads the server's tests prove.
type service struct {
	viewsErr error
	asked    []*larderv1.GetFeaturesRequest
}

func (s *service) ListViews(context.Context, *larderv1.ListViewsRequest) (*larderv1.ListViewsResponse, error) {
	if s.viewsErr != nil {
		return nil, s.viewsErr
	}
	at := func(d time.Duration) *timestamppb.Timestamp { return timestamppb.New(now.Add(d)) }
	return &larderv1.ListViewsResponse{Views: []*larderv1.ViewInfo{
		{Name: "user_profile", Kind: "latest", Entity: "user", Generation: 7, Rows: 10000,
			AsOf: at(-30 * time.Hour), Age: durationpb.New(30 * time.Hour), MaxAge: durationpb.New(24 * time.Hour),
			Schedule: "0 * * * *", NextRunAt: at(20 * time.Minute),
			LastSuccess: &larderv1.RunSummary{FinishedAt: at(-30 * time.Hour), Generation: 7},
			LastFailure: &larderv1.RunSummary{FinishedAt: at(-time.Hour), Error: "source users: open u.parquet: no such file or directory"},
			Streams:     []*larderv1.StreamLag{{Stream: "clicks", Entries: 12, Behind: durationpb.New(90 * time.Second)}}},
		{Name: "session_state", Kind: "latest", Entity: "session"},
	}}, nil
}

func (s *service) GetFeatures(_ context.Context, req *larderv1.GetFeaturesRequest) (*larderv1.GetFeaturesResponse, error) {
	s.asked = append(s.asked, req)
	if req.GetFeatures()[0] == "session_state:*" {
		return &larderv1.GetFeaturesResponse{RowCount: 1,
			Columns:     []*larderv1.FeatureColumn{{Name: "session_state:page", Type: larderv1.ValueType_VALUE_TYPE_STRING, StringValues: []string{""}, NullRows: []int32{0}}},
			Views:       []*larderv1.ViewRows{{View: "session_state", Statuses: []larderv1.FeatureStatus{larderv1.FeatureStatus_FEATURE_STATUS_NOT_FOUND}, EventTimeMicros: []int64{0}}},
			Generations: []*larderv1.ViewGeneration{{View: "session_state", Generation: 2}}}, nil
	}
	if req.GetKeys()[0].GetInt64Value() == 404 {
		return nil, status.Error(codes.Unavailable, "redis: connection refused")
	}
	recent := make([]int64, 25)
	for i := range recent {
		recent[i] = int64(1000 + i)
	}
	event := now.Add(-30 * time.Hour).UnixMicro()
	return &larderv1.GetFeaturesResponse{
		RowCount: 1,
		Columns: []*larderv1.FeatureColumn{
			{Name: "user_profile:age", Type: larderv1.ValueType_VALUE_TYPE_INT64, Int64Values: []int64{38}},
			{Name: "user_profile:country", Type: larderv1.ValueType_VALUE_TYPE_STRING, StringValues: []string{"<b>ES</b>"}},
			{Name: "user_profile:recent", Type: larderv1.ValueType_VALUE_TYPE_INT64_LIST, ListLengths: []int32{int32(len(recent))}, Int64ListValues: recent},
		},
		Views:       []*larderv1.ViewRows{{View: "user_profile", Statuses: []larderv1.FeatureStatus{larderv1.FeatureStatus_FEATURE_STATUS_STALE}, EventTimeMicros: []int64{event}}},
		Generations: []*larderv1.ViewGeneration{{View: "user_profile", Generation: 7}},
	}, nil
}

// authenticator knows two tokens, as *server.Auth would.
type authenticator struct{}

func (authenticator) Identify(token string, _ *x509.Certificate) (string, larder.Role, error) {
	switch token {
	case "admin-token-0123456789":
		return "ops", larder.RoleAdmin, nil
	case "read-token-0123456789":
		return "recs", larder.RoleRead, nil
	case "":
		return "", "", errors.New("no credential")
	}
	return "", "", errors.New("invalid bearer token")
}

func newConsole(tb testing.TB, svc *service, auth console.Authenticator) *httptest.Server {
	tb.Helper()
	p := project(tb)
	h, err := console.New(console.Config{
		Service: svc,
		Project: func() *larder.Project { return p },
		Models: func() []console.Model {
			return []console.Model{{Ranker: "home_feed", Version: "sha256:3347ff743825", Path: "/srv/models/rerank.onnx", LoadedAt: now.Add(-time.Hour)}}
		},
		Auth: auth,
		Now:  func() time.Time { return now },
	})
	if err != nil {
		tb.Fatal(err)
	}
	srv := httptest.NewServer(h)
	tb.Cleanup(srv.Close)
	return srv
}

// get fetches path from srv, with an Authorization header when auth is not
// empty, and returns the status, the headers and the body.
func get(tb testing.TB, srv *httptest.Server, method, path, auth string) (int, http.Header, string) {
	tb.Helper()
	req, err := http.NewRequestWithContext(tb.Context(), method, srv.URL+path, nil)
	if err != nil {
		tb.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(body)
}

func TestConsolePage(t *testing.T) {
	svc := &service{}
	srv := newConsole(t, svc, nil)
	code, hdr, body := get(t, srv, http.MethodGet, "/", "")
	if code != http.StatusOK || !strings.HasPrefix(hdr.Get("Content-Type"), "text/html") {
		t.Fatalf("GET / = %d %s:\n%s", code, hdr.Get("Content-Type"), body)
	}
	if hdr.Get("Cache-Control") != "no-store" || !strings.Contains(hdr.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Errorf("headers %v: want no-store and a content security policy", hdr)
	}
	for _, want := range []string{
		// The stale view, its age against its max age, its failure after its
		// last success, and its stream's lag.
		`<tr id="view-user_profile"><td>user_profile</td><td>latest</td><td>user</td><td class="num">7</td><td class="num">10000</td>` +
			`<td>2025-05-31T06:00:00Z</td><td class="stale">1d6h (stale)</td><td>1d</td><td><code>0 * * * *</code></td>` +
			`<td>2025-06-01T12:20:00Z (in 20m)</td><td>2025-05-31T06:00:00Z (1d6h ago)</td>` +
			`<td class="failed">2025-06-01T11:00:00Z (1h ago): source users: open u.parquet: no such file or directory</td>` +
			`<td class="lag">clicks: 12 unread, 1m behind<br></td></tr>`,
		`<tr id="view-session_state"><td>session_state</td><td>latest</td><td>session</td><td class="num">none</td><td class="num">-</td>`,
		`<tr id="ranker-home_feed"><td>home_feed</td><td><code>sha256:3347ff743825</code></td><td>2025-06-01T11:00:00Z</td><td><code>/srv/models/rerank.onnx</code></td></tr>`,
		`The server authenticates no one`,
		`<option>user_profile</option><option>session_state</option>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the page lacks %s:\n%s", want, body)
		}
	}
	if len(svc.asked) != 0 {
		t.Errorf("the page without a lookup called GetFeatures %d times", len(svc.asked))
	}

	t.Run("lookup", func(t *testing.T) {
		code, _, body := get(t, srv, http.MethodGet, "/?view=user_profile&key=42", "")
		if code != http.StatusOK {
			t.Fatalf("lookup = %d:\n%s", code, body)
		}
		req := svc.asked[len(svc.asked)-1]
		if req.GetKeys()[0].GetInt64Value() != 42 || req.GetFeatures()[0] != "user_profile:*" {
			t.Errorf("GetFeatures(%v), want user_profile:* of int64 key 42", req)
		}
		for _, want := range []string{
			`<option selected>user_profile</option>`,
			`value="42"`,
			`user_profile, generation 7, user (user_id) = <code>42</code>`,
			`<tr id="value-age"><td>age</td><td class="val">38</td><td class="stale">stale</td><td>2025-05-31T06:00:00Z</td></tr>`,
			// A value is text, never markup.
			`<td class="val">&#34;&lt;b&gt;ES&lt;/b&gt;&#34;</td>`,
			`<td class="val">[1000 1001 1002 1003 1004 1005 1006 1007 1008 1009 1010 1011 1012 1013 1014 1015 1016 1017 1018 1019 ...] (25 in all)</td>`,
		} {
			if !strings.Contains(body, want) {
				t.Errorf("the lookup lacks %s:\n%s", want, body)
			}
		}
	})

	for _, tc := range []struct {
		name, query string
		code        int
		want        string
	}{
		{"string key, not found", "?view=session_state&key=s-1", http.StatusOK,
			`<tr id="value-page"><td>page</td><td class="val missing">-</td><td class="missing">not found</td><td>-</td></tr>`},
		{"key of the wrong type", "?view=user_profile&key=abc", http.StatusBadRequest,
			`<p class="error" id="lookup-error">entity user is keyed by int64 user_id: key &#34;abc&#34; is not an int64</p>`},
		{"unknown view", "?view=nope&key=1", http.StatusBadRequest,
			`<p class="error" id="lookup-error">unknown view &#34;nope&#34; (views: user_profile, session_state)</p>`},
		{"no key", "?view=user_profile&key=", http.StatusBadRequest, `type a key`},
		{"store down", "?view=user_profile&key=404", http.StatusServiceUnavailable,
			`<p class="error" id="lookup-error">redis: connection refused</p>`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, body := get(t, srv, http.MethodGet, "/"+tc.query, "")
			if code != tc.code || !strings.Contains(body, tc.want) {
				t.Errorf("GET /%s = %d, want %d and a page with %s:\n%s", tc.query, code, tc.code, tc.want, body)
			}
		})
	}

	t.Run("views unavailable", func(t *testing.T) {
		srv := newConsole(t, &service{viewsErr: status.Error(codes.Unavailable, "redis: i/o timeout")}, nil)
		code, _, body := get(t, srv, http.MethodGet, "/", "")
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "The views could not be listed: redis: i/o timeout") ||
			!strings.Contains(body, `id="ranker-home_feed"`) {
			t.Errorf("GET / with the views unavailable = %d, want 503 with the error and the rankers:\n%s", code, body)
		}
	})
}

func TestConsoleReadOnly(t *testing.T) {
	srv := newConsole(t, &service{}, nil)
	for _, tc := range []struct {
		method, path string
		code         int
	}{
		{http.MethodPost, "/", http.StatusMethodNotAllowed},
		{http.MethodDelete, "/", http.StatusMethodNotAllowed},
		{http.MethodGet, "/views", http.StatusNotFound},
		{http.MethodHead, "/", http.StatusOK},
	} {
		if code, _, _ := get(t, srv, tc.method, tc.path, ""); code != tc.code {
			t.Errorf("%s %s = %d, want %d", tc.method, tc.path, code, tc.code)
		}
	}
}

func TestConsoleAuth(t *testing.T) {
	srv := newConsole(t, &service{}, authenticator{})
	basic := func(user, password string) string {
		req, _ := http.NewRequest(http.MethodGet, "/", nil)
		req.SetBasicAuth(user, password)
		return req.Header.Get("Authorization")
	}
	for _, tc := range []struct {
		name, auth string
		code       int
		want       string
	}{
		{"no credential", "", http.StatusUnauthorized, "the console needs the admin role: no credential"},
		{"wrong token", "Bearer wrong-token-0123456789", http.StatusUnauthorized, "invalid bearer token"},
		{"basic without a password", basic("ops", ""), http.StatusUnauthorized, "no password"},
		{"another scheme", "Digest abc", http.StatusUnauthorized, "neither a bearer token nor basic"},
		{"read token", "Bearer read-token-0123456789", http.StatusForbidden, "the console needs the admin role; recs has read"},
		{"admin token", "Bearer admin-token-0123456789", http.StatusOK, "signed in as ops (admin)"},
		{"admin token as a password", basic("anyone", "admin-token-0123456789"), http.StatusOK, "signed in as ops (admin)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, hdr, body := get(t, srv, http.MethodGet, "/?view=user_profile&key=42", tc.auth)
			if code != tc.code || !strings.Contains(body, tc.want) {
				t.Errorf("GET with %q = %d, want %d and %q:\n%s", tc.auth, code, tc.code, tc.want, body)
			}
			if code == http.StatusUnauthorized && !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Basic ") {
				t.Errorf("401 without a basic challenge: %v", hdr)
			}
			if code != http.StatusOK && regexp.MustCompile(`token-0123456789|\d{2}\b`).MatchString(body) {
				t.Errorf("a refusal repeats the credential or shows a value:\n%s", body)
			}
			if code == http.StatusOK && (strings.Contains(body, "authenticates no one") || !strings.Contains(body, "/srv/models/rerank.onnx")) {
				t.Errorf("the admin's page warns of no authentication, or hides the model paths:\n%s", body)
			}
		})
	}
}
