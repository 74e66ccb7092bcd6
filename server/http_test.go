package server_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/larder-dev/larder"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
	"github.com/larder-dev/larder/redistest"
	"github.com/larder-dev/larder/server"
)

// TestHTTP calls the HTTP/JSON gateway with a plain HTTP client: its
// answers are the gRPC answers in protobuf's JSON mapping, and a bad
// request is answered 400 with the reason.
func TestHTTP(t *testing.T) {
	f := newFixture(t, fixtureConfig{models: map[string]server.Model{"reco": newFakeModel("v1", 1)}})
	web := serveGateway(t, f)

	post := func(t *testing.T, path, body string) (int, []byte) {
		t.Helper()
		return postJSON(t, web.Client(), web.URL+path, body)
	}
	same := func(t *testing.T, path, body string, viaGRPC proto.Message, into proto.Message) {
		t.Helper()
		code, b := post(t, path, body)
		if code != http.StatusOK {
			t.Fatalf("POST %s: %d %s", path, code, b)
		}
		if err := protojson.Unmarshal(b, into); err != nil {
			t.Fatalf("POST %s: %v in %s", path, err, b)
		}
		if !proto.Equal(into, viaGRPC) {
			t.Errorf("POST %s answered\n%v\nwhere gRPC answers\n%v", path, into, viaGRPC)
		}
	}

	t.Run("GetFeatures", func(t *testing.T) {
		req := &larderv1.GetFeaturesRequest{Keys: append(intKeys(1, 3, 4), intKeys(99)...), Features: []string{"user_profile:*", "user_stats:clicks"}}
		want, err := f.client.GetFeatures(t.Context(), req)
		if err != nil {
			t.Fatal(err)
		}
		same(t, "/v1/features", `{"keys":[{"int64_value":1},{"int64Value":"3"},{"int64_value":4},{"int64_value":99}],"features":["user_profile:*","user_stats:clicks"]}`,
			want, &larderv1.GetFeaturesResponse{})
	})
	t.Run("Rank", func(t *testing.T) {
		req := &larderv1.RankRequest{Ranker: "reco", ContextKey: intKey(1), CandidateKeys: strKeys("i1", "i2", "i3"), TopK: 2,
			RequestFeatures: map[string]*larderv1.Value{"hour": intVal(1), "mobile": boolVal(true)}}
		want, err := f.client.Rank(t.Context(), req)
		if err != nil {
			t.Fatal(err)
		}
		same(t, "/v1/rank", `{"ranker":"reco","context_key":{"int64_value":1},"candidate_keys":[{"string_value":"i1"},{"string_value":"i2"},{"string_value":"i3"}],
			"request_features":{"hour":{"int64_value":1},"mobile":{"bool_value":true}},"top_k":2}`, want, &larderv1.RankResponse{})
	})
	t.Run("ListViews", func(t *testing.T) {
		code, b := post(t, "/v1/views", `{}`)
		var got larderv1.ListViewsResponse
		if code != http.StatusOK || protojson.Unmarshal(b, &got) != nil || len(got.GetViews()) != len(f.project.Views) {
			t.Errorf("POST /v1/views: %d %s", code, b)
		}
	})
	t.Run("Push", func(t *testing.T) {
		code, b := post(t, "/v1/push", `{"view":"user_stats","rows":[{"key":{"int64_value":7},"event_time":"2026-11-27T08:20:00Z","values":{"clicks":{"int64_value":3}}}]}`)
		var got larderv1.PushResponse
		if code != http.StatusOK || protojson.Unmarshal(b, &got) != nil || len(got.GetOutcomes()) != 1 {
			t.Errorf("POST /v1/push: %d %s", code, b)
		}
	})

	for _, tc := range []struct {
		name, path, body string
		status           int
		reason           string
	}{
		{"unknown view", "/v1/features", `{"keys":[{"int64_value":1}],"features":["nope:*"]}`, 400, "features[0]: unknown view"},
		{"no keys", "/v1/features", `{"features":["user_profile:*"]}`, 400, "keys: at least one entity key is required"},
		{"a key of the wrong type", "/v1/features", `{"keys":[{"string_value":"x"}],"features":["user_profile:age"]}`, 400, "keys[0]"},
		{"not JSON", "/v1/features", `{"keys":`, 400, ""},
		{"an unknown field", "/v1/features", `{"keyz":[]}`, 400, "keyz"},
		{"unknown ranker", "/v1/rank", `{"ranker":"nope","context_key":{"int64_value":1}}`, 400, "ranker"},
		{"a view never published", "/v1/features", `{"keys":[{"int64_value":1}],"features":["user_never:x"]}`, 400, "user_never"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, b := post(t, tc.path, tc.body)
			var st struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			}
			if err := json.Unmarshal(b, &st); err != nil {
				t.Fatalf("%d %s: %v", code, b, err)
			}
			if code != tc.status || st.Message == "" || !strings.Contains(st.Message, tc.reason) {
				t.Errorf("POST %s %s: %d %s, want %d with a message saying %q", tc.path, tc.body, code, b, tc.status, tc.reason)
			}
		})
	}
	t.Run("unknown path", func(t *testing.T) {
		if code, b := post(t, "/v1/nope", `{}`); code != http.StatusNotFound {
			t.Errorf("POST /v1/nope: %d %s, want 404", code, b)
		}
	})
}

// TestHTTPClientCertificate serves the gateway over mutual TLS with
// certificate roles: a request's verified client certificate gives it the
// role its identity has, as over gRPC; a certificate without a role, or a
// role too weak, is refused 403; a bearer token still wins over the
// certificate; a ticket sent in a header, even one that is live, gives
// nothing; and no ticket outlives its request.
func TestHTTPClientCertificate(t *testing.T) {
	pki := redistest.NewPKI(t)
	svc := newOpsService(t, newFakeModel("v1", 1), func(cfg *server.Config) { cfg.Auth = testAuth(t) })
	gw, err := server.NewHTTP(svc, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Close() })
	tlsCfg, err := server.TLSConfig(larder.Server{TLSCertFile: pki.ServerCert, TLSKeyFile: pki.ServerKey, TLSClientCAFile: pki.CAFile})
	if err != nil {
		t.Fatal(err)
	}
	web := httptest.NewUnstartedServer(gw)
	web.TLS = tlsCfg
	web.StartTLS()
	t.Cleanup(web.Close)

	ca, err := os.ReadFile(pki.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca)
	client := func(t *testing.T, cn string, dns ...string) *http.Client {
		certFile, keyFile := pki.ClientCertificate(t, cn, dns...)
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
			RootCAs: roots, Certificates: []tls.Certificate{cert}, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}}}
	}
	post := func(t *testing.T, c *http.Client, path, body string, header ...string) (int, string) {
		t.Helper()
		code, b := postJSON(t, c, web.URL+path, body, header...)
		return code, string(b)
	}
	const push = `{"view":"user_stats","rows":[{"key":{"int64_value":7},"event_time":"2026-11-27T08:20:00Z","values":{"clicks":{"int64_value":3}}}]}`

	reader := client(t, "recs-7f9c", "recs.shop.internal")
	if code, b := post(t, reader, "/v1/views", `{}`); code != http.StatusOK {
		t.Errorf("a read certificate: POST /v1/views answered %d %s, want 200", code, b)
	}
	if code, b := post(t, reader, "/v1/push", push); code != http.StatusForbidden || !strings.Contains(b, "certificate recs.shop.internal has read") {
		t.Errorf("a read certificate: POST /v1/push answered %d %s, want 403 naming the certificate's role", code, b)
	}
	admin := client(t, "ops-cli")
	if code, b := post(t, admin, "/v1/views", `{}`); code != http.StatusOK {
		t.Errorf("an admin certificate: POST /v1/views answered %d %s, want 200", code, b)
	}
	intruder := client(t, "intruder")
	if code, b := post(t, intruder, "/v1/views", `{}`); code != http.StatusForbidden || !strings.Contains(b, `the client certificate of \"intruder\" has no role`) {
		t.Errorf("a certificate without a role: POST /v1/views answered %d %s, want 403 saying it has no role", code, b)
	}
	if code, b := post(t, intruder, "/v1/views", `{}`, "Authorization", "Bearer "+readToken); code != http.StatusOK {
		t.Errorf("a certificate without a role and a read token: POST /v1/views answered %d %s, want 200", code, b)
	}
	// A ticket header sent by a certificate holder changes nothing: its
	// own certificate still counts, with its own role.
	for _, h := range []string{"Grpc-Metadata-Larder-Gateway-Peer", "Larder-Gateway-Peer"} {
		if code, b := post(t, reader, "/v1/views", `{}`, h, "made-up"); code != http.StatusOK {
			t.Errorf("a read certificate sending %s: POST /v1/views answered %d %s, want 200", h, code, b)
		}
		if code, b := post(t, reader, "/v1/push", push, h, "made-up"); code != http.StatusForbidden || !strings.Contains(b, "certificate recs.shop.internal has read") {
			t.Errorf("a read certificate sending %s: POST /v1/push answered %d %s, want 403 naming its own role", h, code, b)
		}
	}

	// A caller without a certificate, on a listener without TLS, sends
	// the ticket of an admin certificate's request in flight, in every
	// form of header: it is never honoured.
	certFile, _ := pki.ClientCertificate(t, "ops-cli")
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(certPEM)
	opsCert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	plain := httptest.NewServer(gw)
	t.Cleanup(plain.Close)
	withdraw := server.PlantGatewayTicket(gw, "live-ticket", opsCert)
	for _, h := range []string{"Grpc-Metadata-Larder-Gateway-Peer", "grpc-metadata-larder-gateway-peer", "Larder-Gateway-Peer", "LARDER-GATEWAY-PEER"} {
		code, b := postJSON(t, plain.Client(), plain.URL+"/v1/views", `{}`, h, "live-ticket")
		if code != http.StatusUnauthorized {
			t.Errorf("no certificate, a live ticket in %s: POST /v1/views answered %d %s, want 401", h, code, b)
		}
	}
	withdraw()

	// Every ticket is withdrawn once its request is answered, a request
	// that ran out of time included.
	if code, b := post(t, reader, "/v1/views", `{}`, "Grpc-Timeout", "1n"); code == http.StatusOK {
		t.Logf("a request with a deadline of 1ns answered %d %s", code, b)
	}
	if n := server.GatewayTickets(gw); n != 0 {
		t.Errorf("%d tickets live after every request was answered, want 0", n)
	}
}

// postJSON posts body to url with c, with the headers given as name,
// value pairs, and returns the answer's status and body.
func postJSON(t *testing.T, c *http.Client, url, body string, header ...string) (int, []byte) {
	t.Helper()
	code, _, b := postJSONHeader(t, c, url, body, header...)
	return code, b
}

// postJSONHeader is postJSON that also returns the answer's header.
func postJSONHeader(t *testing.T, c *http.Client, url, body string, header ...string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

// TestHTTPRefusals checks how the gateway answers what it cannot serve: a
// request past a limit is 400, never 429, since it can never succeed when
// retried, and says which limit in its details; a method a route does not
// take is 405 with an Allow header; a body that is not JSON is 400 saying
// so and where; a body past MaxHTTPBody is 413 naming the limit; and no
// answer carries the gRPC content type of the gateway's own call.
func TestHTTPRefusals(t *testing.T) {
	f := newFixture(t, fixtureConfig{edit: func(p *larder.Project) { p.Server.MaxRequestCells = 4 }})
	web := serveGateway(t, f)

	type answer struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Details []struct {
			Type   string `json:"@type"`
			Reason string `json:"reason"`
			Domain string `json:"domain"`
		} `json:"details"`
	}
	decode := func(t *testing.T, code int, b []byte) answer {
		t.Helper()
		var a answer
		if err := json.Unmarshal(b, &a); err != nil {
			t.Fatalf("%d %s: %v", code, b, err)
		}
		return a
	}

	t.Run("max_request_cells", func(t *testing.T) {
		code, b := postJSON(t, web.Client(), web.URL+"/v1/features", `{"keys":[{"int64_value":1},{"int64_value":2},{"int64_value":3}],"features":["user_profile:age","user_profile:score"]}`)
		a := decode(t, code, b)
		if code != http.StatusBadRequest || !strings.Contains(a.Message, "max_request_cells") {
			t.Errorf("3 keys × 2 features past max_request_cells 4: %d %s, want 400 naming the limit", code, b)
		}
		if len(a.Details) != 1 || a.Details[0].Reason != server.ReasonTooLarge || a.Details[0].Domain != server.ErrorDomain {
			t.Errorf("3 keys × 2 features past max_request_cells 4: details %+v, want one ErrorInfo of reason %s", a.Details, server.ReasonTooLarge)
		}
	})
	t.Run("max_entities", func(t *testing.T) {
		keys := strings.Repeat(`{"int64_value":1},`, testMaxEntities)
		code, b := postJSON(t, web.Client(), web.URL+"/v1/features", `{"keys":[`+keys+`{"int64_value":1}],"features":["user_profile:age"]}`)
		if code != http.StatusBadRequest {
			t.Errorf("%d keys: %d %s, want 400", testMaxEntities+1, code, b)
		}
	})

	for _, tc := range []struct{ method, path string }{
		{http.MethodGet, "/v1/features"},
		{http.MethodPut, "/v1/features"},
		{http.MethodDelete, "/v1/rank"},
		{http.MethodGet, "/v1/views"},
		{http.MethodGet, "/v1/push"},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), tc.method, web.URL+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := web.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			a := decode(t, resp.StatusCode, b)
			if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != http.MethodPost || !strings.Contains(a.Message, "POST") {
				t.Errorf("%s %s: %d, Allow %q, %s; want 405, Allow POST, and a message naming POST",
					tc.method, tc.path, resp.StatusCode, resp.Header.Get("Allow"), b)
			}
		})
	}

	for _, tc := range []struct{ name, body, reason string }{
		{"cut short", `{"keys":`, "the request body is not valid JSON: it ends after 8 bytes, inside a value"},
		{"a bad character", `{"keys": x}`, "the request body is not valid JSON: invalid character 'x' looking for beginning of value, at byte 10"},
		{"an unknown field", `{"keyz":[]}`, `the request body is not a GetFeaturesRequest in protobuf's JSON mapping: `},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, b := postJSON(t, web.Client(), web.URL+"/v1/features", tc.body)
			if a := decode(t, code, b); code != http.StatusBadRequest || !strings.Contains(a.Message, tc.reason) {
				t.Errorf("POST %s: %d %s, want 400 saying %q", tc.body, code, b, tc.reason)
			}
		})
	}
	t.Run("a body past MaxHTTPBody", func(t *testing.T) {
		body := `{"keys":[` + strings.Repeat(`{"int64_value":1},`, 5<<20/18) + `{"int64_value":1}],"features":["user_profile:age"]}`
		code, b := postJSON(t, web.Client(), web.URL+"/v1/features", body)
		if a := decode(t, code, b); code != http.StatusRequestEntityTooLarge || !strings.Contains(a.Message, "4 MiB") {
			t.Errorf("a body of %d bytes: %d %s, want 413 naming the limit, 4 MiB", len(body), code, b)
		}
	})

	t.Run("headers", func(t *testing.T) {
		for _, body := range []string{`{"keys":[{"int64_value":1}],"features":["user_profile:age"]}`, `{"keys":[{"int64_value":1}],"features":["nope:*"]}`} {
			code, h, b := postJSONHeader(t, web.Client(), web.URL+"/v1/features", body)
			if h.Get("Content-Type") != "application/json" {
				t.Errorf("POST %s: %d, Content-Type %q, want application/json", body, code, h.Get("Content-Type"))
			}
			for k := range h {
				if strings.HasPrefix(k, "Grpc-Metadata-") && k != "Grpc-Metadata-X-Request-Id" {
					t.Errorf("POST %s: %d %s carries %s: %q", body, code, b, k, h[k])
				}
			}
		}
	})
}

// TestHTTPLargeResponse reads through the gateway a response larger than
// gRPC's default limit of a message a client receives (4 MiB): the
// server's own limit, server.max_response_bytes, is the one that counts,
// over HTTP as over gRPC.
func TestHTTPLargeResponse(t *testing.T) {
	f := newFixture(t, fixtureConfig{})
	web := serveGateway(t, f)

	big := strings.Repeat("x", 60<<10) // under the views' max_value_bytes, 64 KiB
	code, b := postJSON(t, web.Client(), web.URL+"/v1/push", `{"view":"user_profile","rows":[{"key":{"int64_value":7},"event_time":"2026-11-27T08:20:00Z",
		"values":{"country":{"string_value":"`+big+`"},"avatar":{"bytes_value":"`+base64.StdEncoding.EncodeToString([]byte(big))+`"}}}]}`)
	if code != http.StatusOK {
		t.Fatalf("POST /v1/push: %d %s", code, b)
	}
	keys := strings.Repeat(`{"int64_value":7},`, testMaxEntities-1) + `{"int64_value":7}`
	code, b = postJSON(t, web.Client(), web.URL+"/v1/features", `{"keys":[`+keys+`],"features":["user_profile:country","user_profile:avatar"]}`)
	var got larderv1.GetFeaturesResponse
	if code != http.StatusOK || protojson.Unmarshal(b, &got) != nil {
		if len(b) > 300 {
			b = b[:300]
		}
		t.Fatalf("GetFeatures of %d keys × 2 values of 60 KiB: %d %s, want 200", testMaxEntities, code, b)
	}
	if n := len(got.GetColumns()); n != 2 || len(got.GetColumns()[0].GetStringValues()) != testMaxEntities || got.GetColumns()[0].GetStringValues()[0] != big {
		t.Errorf("GetFeatures of %d keys × 2 values of 60 KiB: %d columns, not the values pushed", testMaxEntities, n)
	}
}

// serveGateway serves the HTTP/JSON gateway of f's service on a test
// server, both closed at the end of the test.
func serveGateway(t *testing.T, f *fixture) *httptest.Server {
	t.Helper()
	gw, err := server.NewHTTP(f.svc, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Close() })
	web := httptest.NewServer(gw)
	t.Cleanup(web.Close)
	return web
}

// TestHTTPSlowBody checks that the gateway gives up on a request whose body
// does not arrive within its BodyTimeout, answering 408 with the reason,
// rather than wait for it for as long as the caller likes; and that a call
// whose body arrived in time is not cut short by that bound, however long
// it then takes.
func TestHTTPSlowBody(t *testing.T) {
	model := &blockingModel{hold: 600 * time.Millisecond}
	f := newFixture(t, fixtureConfig{edit: noModelTimeout, models: map[string]server.Model{"reco": model}})
	gw, err := server.NewHTTP(f.svc, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Close() })
	gw.BodyTimeout = 300 * time.Millisecond
	web := httptest.NewServer(gw)
	t.Cleanup(web.Close)

	conn, err := net.Dial("tcp", web.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// 100 bytes announced, one sent.
	if _, err := io.WriteString(conn, "POST /v1/features HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to a body that stopped arriving, after %s: %v", time.Since(start), err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(b), "did not arrive within 300ms") {
		t.Errorf("a body that stopped arriving: %d %s, want 408 saying so", resp.StatusCode, b)
	}

	// The bound is on the body only: a call whose model takes twice as
	// long once its body has arrived is answered, and so is the next
	// request on the connection.
	client := web.Client()
	for range 2 {
		code, b := postJSON(t, client, web.URL+"/v1/rank", `{"ranker":"reco","context_key":{"int64_value":1},"candidate_keys":[{"string_value":"i1"}],
			"request_features":{"hour":{"int64_value":13},"mobile":{"bool_value":true}}}`)
		var got larderv1.RankResponse
		if code != http.StatusOK || protojson.Unmarshal(b, &got) != nil || got.GetDegraded() {
			t.Errorf("a Rank of 600ms past a body bound of 300ms: %d %s, want 200, not degraded", code, b)
		}
	}
}

// slowLiveStore is a FeatureStore whose Live takes hold, or fails with
// its context's error when that ends first.
type slowLiveStore struct {
	larder.FeatureStore
	hold time.Duration
}

func (s slowLiveStore) Live(ctx context.Context, v *larder.View) (larder.Generation, error) {
	select {
	case <-time.After(s.hold):
	case <-ctx.Done():
		return larder.Generation{}, ctx.Err()
	}
	return s.FeatureStore.Live(ctx, v)
}

// TestHTTPNoBodyNotCut checks that the body bound leaves alone a request
// without a body (ListViews takes none), whose call outlasts the bound:
// there is no body to wait for, and the call keeps its own deadline.
func TestHTTPNoBodyNotCut(t *testing.T) {
	f := newFixture(t, fixtureConfig{wrap: func(fs larder.FeatureStore) larder.FeatureStore {
		return slowLiveStore{FeatureStore: fs, hold: 200 * time.Millisecond}
	}})
	gw, err := server.NewHTTP(f.svc, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Close() })
	gw.BodyTimeout = 100 * time.Millisecond
	web := httptest.NewServer(gw)
	t.Cleanup(web.Close)
	// An empty body is sent as none (Content-Length: 0).
	if code, b := postJSON(t, web.Client(), web.URL+"/v1/views", ""); code != http.StatusOK {
		t.Errorf("a ListViews without a body, slower than the body bound: %d %s, want 200", code, b)
	}
}
