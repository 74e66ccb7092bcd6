package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
	"github.com/larder-dev/larder/redistest"
)

// httpLine is what serve prints when it serves HTTP/JSON.
var httpLine = regexp.MustCompile(`(?m)^serving HTTP/JSON on (https?://\S+)/v1/$`)

// TestServeHTTP runs larder serve --http on the demo project and calls it
// with a plain HTTP client, as curl does: GetFeatures answers the values
// gRPC answers, and a bad request is answered 400 with the reason.
func TestServeHTTP(t *testing.T) {
	t.Parallel()
	_, config := demoProject(t)
	redis := redistest.Start(t)
	mustSucceed(t, larderAt(t, t.Context(), t0, "--redis", redis.Addr, "-c", config, "materialize"), "materialize")
	srv := startServe(t, "--redis", redis.Addr, "-c", config, "serve", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0")
	m := httpLine.FindStringSubmatch(srv.log())
	if m == nil {
		t.Fatalf("serve did not print the HTTP/JSON address:\n%s", srv.log())
	}
	base := m[1]

	post := func(path, body string) (int, []byte) {
		t.Helper()
		resp, err := http.Post(base+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, b
	}

	conn, err := grpc.NewClient(srv.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	want, err := larderv1.NewFeatureServiceClient(conn).GetFeatures(t.Context(), &larderv1.GetFeaturesRequest{
		Keys: []*larderv1.EntityKey{int64Key(1), int64Key(2), int64Key(-1)}, Features: []string{"user_profile:*"}})
	if err != nil {
		t.Fatal(err)
	}
	code, b := post("/v1/features", `{"keys":[{"int64_value":1},{"int64_value":2},{"int64_value":-1}],"features":["user_profile:*"]}`)
	var got larderv1.GetFeaturesResponse
	if code != http.StatusOK || protojson.Unmarshal(b, &got) != nil {
		t.Fatalf("POST /v1/features: %d %s", code, b)
	}
	if !proto.Equal(&got, want) {
		t.Errorf("POST /v1/features answered\n%v\nwhere gRPC answers\n%v", &got, want)
	}

	code, b = post("/v1/features", `{"keys":[{"int64_value":1}],"features":["user_profile:nope"]}`)
	if code != http.StatusBadRequest || !strings.Contains(string(b), `view \"user_profile\" has no feature`) {
		t.Errorf("an unknown feature: %d %s, want 400 naming it", code, b)
	}
}

// TestServeHTTPTLSTokens runs serve --http with TLS and bearer tokens: the
// gateway speaks HTTPS with the server's certificate, and checks tokens
// and roles as gRPC does.
func TestServeHTTPTLSTokens(t *testing.T) {
	t.Parallel()
	_, config := demoProject(t)
	pki := redistest.NewPKI(t)
	secured := securedProject(t, config, "tls-tokens.yaml", fmt.Sprintf("server:\n  tls_cert_file: %s\n  tls_key_file: %s\n  auth:\n    tokens_file: tokens\n",
		pki.ServerCert, pki.ServerKey))
	srv := startServe(t, "-c", secured, "serve", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0")
	m := httpLine.FindStringSubmatch(srv.log())
	if m == nil || !strings.HasPrefix(m[1], "https://") {
		t.Fatalf("serve did not print an https address for HTTP/JSON:\n%s", srv.log())
	}
	caPEM, err := os.ReadFile(pki.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	web := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}}
	for _, tc := range []struct {
		name, path, body, token string
		code                    int
		want                    string
	}{
		{"no token", "/v1/views", `{}`, "", http.StatusUnauthorized, "bearer token"},
		{"read token", "/v1/views", `{}`, readToken, http.StatusOK, `"name":"user_profile"`},
		{"read token pushing", "/v1/push", `{"view":"user_last_event","rows":[]}`, readToken, http.StatusForbidden, "role"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, m[1]+tc.path, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			resp, err := web.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.code || !strings.Contains(string(b), tc.want) {
				t.Errorf("POST %s = %d %s, want %d and %q", tc.path, resp.StatusCode, b, tc.code, tc.want)
			}
		})
	}
}
