package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/larder-dev/larder"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
	"github.com/larder-dev/larder/redistest"
)

// consoleLine is what serve prints when it serves the web console.
var consoleLine = regexp.MustCompile(`(?m)^console at (https?://\S+/)$`)

// chromium returns the path of Debian's chromium, and fails the test when
// it is not installed (make setup installs it); under -short it skips.
func chromium(tb testing.TB) string {
	tb.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	if testing.Short() {
		tb.Skip("chromium is not installed (make setup installs it); skipped under -short")
	}
	tb.Fatal("chromium (or chromium-browser) is not on PATH: run `make setup`, which installs Debian's chromium package, to test the web console in a browser")
	return ""
}

// headless runs chromium headless on url with args, such as --dump-dom,
// and returns its standard output.
func headless(tb testing.TB, bin, url string, args ...string) string {
	tb.Helper()
	// A generous bound, for a browser starting on a busy machine: it
	// guards against a hang, it measures nothing.
	ctx, cancel := context.WithTimeout(tb.Context(), 3*time.Minute)
	defer cancel()
	args = append([]string{"--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
		"--user-data-dir=" + tb.TempDir()}, append(args, url)...)
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		tb.Fatalf("%s %s: %v\n%s", bin, strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}

// cells returns the text of the cells of the table row with id, as
// the browser shows it, or nil when the page has no such row.
func cells(dom, id string) []string {
	row := regexp.MustCompile(`<tr id="` + regexp.QuoteMeta(id) + `">(.*?)</tr>`).FindStringSubmatch(dom)
	if row == nil {
		return nil
	}
	var out []string
	for _, c := range regexp.MustCompile(`<td[^>]*>(.*?)</td>`).FindAllStringSubmatch(row[1], -1) {
		text := regexp.MustCompile(`<[^>]*>`).ReplaceAllString(c[1], "")
		out = append(out, html.UnescapeString(text))
	}
	return out
}

// TestConsoleChromium runs larder serve --console on a Redis server the
// demo project was materialized into, and loads the console in headless
// Chromium: the views table, a key lookup submitted as the form's GET
// query, and the rankers table show what the gRPC API answers.
// LARDER_CONSOLE_SCREENSHOT=PATH also writes a screenshot of a lookup
// (docs/console.png is made so).
func TestConsoleChromium(t *testing.T) {
	// The package's slowest tests that mostly wait (on a browser, on ticks,
	// on a grace period) run side by side, after the others: each has its
	// own redis-server and processes.
	t.Parallel()
	browser := chromium(t)
	ds, config := demoProject(t)
	redis := redistest.Start(t)
	mustSucceed(t, larderAt(t, t.Context(), t0, "--redis", redis.Addr, "-c", config, "materialize"), "materialize")
	srv := startServe(t, "--redis", redis.Addr, "-c", config, "serve", "--listen", "127.0.0.1:0", "--console", "127.0.0.1:0")
	m := consoleLine.FindStringSubmatch(srv.log())
	if m == nil {
		t.Fatalf("serve did not print the console's address:\n%s", srv.log())
	}
	base := m[1]
	if strings.Contains(srv.log(), "warning: the console") {
		t.Errorf("a console on loopback got a warning:\n%s", srv.log())
	}

	// What the page must agree with: the answers of the gRPC API.
	conn, err := grpc.NewClient(srv.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	features, admin := larderv1.NewFeatureServiceClient(conn), larderv1.NewAdminServiceClient(conn)
	views, err := features.ListViews(t.Context(), &larderv1.ListViewsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	models, err := admin.ListModels(t.Context(), &larderv1.ListModelsRequest{})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("views and rankers", func(t *testing.T) {
		dom := headless(t, browser, base, "--dump-dom")
		if len(views.GetViews()) == 0 {
			t.Fatal("ListViews lists no view")
		}
		for _, v := range views.GetViews() {
			got := cells(dom, "view-"+v.GetName())
			if len(got) < 12 {
				t.Errorf("view %s: row %q, want 12 cells:\n%s", v.GetName(), got, dom)
				continue
			}
			want := []string{v.GetName(), v.GetKind(), v.GetEntity(), fmt.Sprint(v.GetGeneration()), fmt.Sprint(v.GetRows())}
			if fmt.Sprint(got[:5]) != fmt.Sprint(want) || v.GetGeneration() != 1 {
				t.Errorf("view %s: cells %q, want %q (generation 1)", v.GetName(), got[:5], want)
			}
			if asOf := v.GetAsOf().AsTime().Format(time.RFC3339); got[5] != asOf {
				t.Errorf("view %s: as of %q, want %q", v.GetName(), got[5], asOf)
			}
			if lastOK := v.GetLastSuccess().GetFinishedAt().AsTime().Format(time.RFC3339) + " (0s ago)"; got[10] != lastOK || got[11] != "-" {
				t.Errorf("view %s: last ok %q and last failed %q, want %q and no failure", v.GetName(), got[10], got[11], lastOK)
			}
			if v.GetSchedule() != "" && !strings.Contains(got[9], " (in ") {
				t.Errorf("view %s: next run %q, want one for schedule %s", v.GetName(), got[9], v.GetSchedule())
			}
		}
		if len(models.GetModels()) == 0 {
			t.Fatal("ListModels lists no model")
		}
		for _, md := range models.GetModels() {
			got := cells(dom, "ranker-"+md.GetRanker())
			want := []string{md.GetRanker(), md.GetVersion(), md.GetLoadedAt().AsTime().Format(time.RFC3339), md.GetPath()}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("ranker %s: cells %q, want %q", md.GetRanker(), got, want)
			}
		}
	})

	t.Run("lookup", func(t *testing.T) {
		user := strconv.FormatInt(ds.SampleUsers(1)[0], 10)
		resp, err := features.GetFeatures(t.Context(), &larderv1.GetFeaturesRequest{
			Keys: []*larderv1.EntityKey{{Key: &larderv1.EntityKey_Int64Value{Int64Value: ds.SampleUsers(1)[0]}}}, Features: []string{"user_profile:*"}})
		if err != nil {
			t.Fatal(err)
		}
		// The form's GET query, as the browser submits it.
		dom := headless(t, browser, base+"?"+url.Values{"view": {"user_profile"}, "key": {user}}.Encode(), "--dump-dom")
		if !strings.Contains(dom, `id="lookup-of"`) {
			t.Fatalf("the lookup shows no values:\n%s", dom)
		}
		cols := columnsOf(t, resp)
		for i := range cols.Columns() {
			feature := strings.TrimPrefix(cols.Name(i), "user_profile:")
			want := []string{feature, protoValueText(cols.Value(i, 0)), "present", cols.EventTime(i, 0).Format(time.RFC3339)}
			if got := cells(dom, "value-"+feature); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("feature %s: cells %q, want %q", feature, got, want)
			}
		}
		if got := cells(dom, "value-age"); got == nil || got[1] != strconv.FormatInt(cols.Int64(0, 0), 10) {
			t.Errorf("age: cells %q, want the int64 %d", got, cols.Int64(0, 0))
		}

		dom = headless(t, browser, base+"?view=user_profile&key=not-a-number", "--dump-dom")
		if !strings.Contains(dom, "entity user is keyed by int64 user_id") {
			t.Errorf("a key of the wrong type shows no error:\n%s", dom)
		}

		if shot := os.Getenv("LARDER_CONSOLE_SCREENSHOT"); shot != "" {
			abs, err := filepath.Abs(shot)
			if err != nil {
				t.Fatal(err)
			}
			headless(t, browser, base+"?"+url.Values{"view": {"user_last_event"}, "key": {user}}.Encode(),
				"--screenshot="+abs, "--window-size=1600,760", "--hide-scrollbars")
			t.Logf("wrote %s", abs)
		}
	})
}

// protoValueText is a value as `larder get` and the console show it.
func protoValueText(v *larderv1.Value) string {
	switch k := v.GetKind().(type) {
	case *larderv1.Value_Int64Value:
		return larder.Int64Value(k.Int64Value).String()
	case *larderv1.Value_Float64Value:
		return larder.Float64Value(k.Float64Value).String()
	case *larderv1.Value_Float32Value:
		return larder.Float32Value(k.Float32Value).String()
	case *larderv1.Value_BoolValue:
		return larder.BoolValue(k.BoolValue).String()
	case *larderv1.Value_StringValue:
		return larder.StringValue(k.StringValue).String()
	}
	return "null"
}

// TestConsoleAuthServe runs serve with server.auth and --console on every
// interface: serve warns that tokens would cross the network in clear
// text, and the console asks for a credential, refuses a read token, and
// shows an admin token's holder the page with the model files.
func TestConsoleAuthServe(t *testing.T) {
	t.Parallel()
	_, config := demoProject(t)
	secured := securedProject(t, config, "secured.yaml", "server:\n  auth:\n    tokens_file: tokens\n")
	srv := startServe(t, "-c", secured, "serve", "--listen", "127.0.0.1:0", "--console", "0.0.0.0:0")
	m := regexp.MustCompile(`(?m)^console at http://(\S+)/$`).FindStringSubmatch(srv.log())
	if m == nil {
		t.Fatalf("serve did not print the console's address:\n%s", srv.log())
	}
	if !strings.Contains(srv.log(), "warning: the console on "+m[1]+" is reachable beyond this machine without TLS: the admin token crosses the network in clear text") {
		t.Errorf("serve did not warn of tokens in clear text:\n%s", srv.log())
	}
	_, port, err := net.SplitHostPort(m[1])
	if err != nil {
		t.Fatal(err)
	}
	page := "http://127.0.0.1:" + port + "/"
	for _, tc := range []struct {
		name, auth string
		code       int
		want       string
	}{
		{"no credential", "", http.StatusUnauthorized, "the console needs the admin role: no credential"},
		{"wrong token", "Bearer " + wrongToken, http.StatusUnauthorized, "invalid bearer token"},
		{"read token", "Bearer " + readToken, http.StatusForbidden, "the console needs the admin role; recs has read"},
		{"admin token", "Bearer " + adminToken, http.StatusOK, "signed in as ops (admin)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, page, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.code || !strings.Contains(string(body), tc.want) {
				t.Errorf("GET %s with %q = %d, want %d and %q:\n%s", page, tc.name, resp.StatusCode, tc.code, tc.want, body)
			}
			if tc.code == http.StatusOK && !strings.Contains(string(body), "rerank.onnx") {
				t.Errorf("the admin's page shows no model file:\n%s", body)
			}
			for _, secret := range []string{readToken, adminToken, wrongToken} {
				if strings.Contains(string(body), secret) {
					t.Errorf("the answer repeats a token:\n%s", body)
				}
			}
		})
	}
}

// TestConsoleMutualTLS runs serve with mutual TLS and certificate roles,
// and --console: the console speaks HTTPS with the server's certificate,
// refuses a client without a certificate, and lets in the certificate whose
// identity has the admin role, but not one that has none.
func TestConsoleMutualTLS(t *testing.T) {
	t.Parallel()
	_, config := demoProject(t)
	pki := redistest.NewPKI(t)
	secured := securedProject(t, config, "mtls.yaml", fmt.Sprintf(`server:
  tls_cert_file: %s
  tls_key_file: %s
  tls_client_ca_file: %s
  auth:
    certificates:
      - {identity: ops-console, role: admin}
`, pki.ServerCert, pki.ServerKey, pki.CAFile))
	srv := startServe(t, "-c", secured, "serve", "--listen", "127.0.0.1:0", "--console", "127.0.0.1:0")
	m := regexp.MustCompile(`(?m)^console at (https://\S+/)$`).FindStringSubmatch(srv.log())
	if m == nil {
		t.Fatalf("serve did not print the console's https address:\n%s", srv.log())
	}
	caPEM, err := os.ReadFile(pki.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	client := func(cn string) *http.Client {
		cfg := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
		if cn != "" {
			certFile, keyFile := pki.ClientCertificate(t, cn)
			cert, err := tls.LoadX509KeyPair(certFile, keyFile)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Certificates = []tls.Certificate{cert}
		}
		return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
	}
	if resp, err := client("").Get(m[1]); err == nil {
		resp.Body.Close()
		t.Errorf("GET %s without a client certificate = %d, want the handshake refused", m[1], resp.StatusCode)
	}
	for _, tc := range []struct {
		cn   string
		code int
		want string
	}{
		{"ops-console", http.StatusOK, "signed in as ops-console (admin)"},
		{"stranger", http.StatusUnauthorized, `the client certificate of "stranger" has no role`},
	} {
		resp, err := client(tc.cn).Get(m[1])
		if err != nil {
			t.Fatalf("GET %s as %s: %v", m[1], tc.cn, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != tc.code || !strings.Contains(string(body), tc.want) {
			t.Errorf("GET %s as %s = %d, want %d and %q:\n%s", m[1], tc.cn, resp.StatusCode, tc.code, tc.want, body)
		}
	}
}
