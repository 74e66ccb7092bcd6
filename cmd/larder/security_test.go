package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/demo"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
	"github.com/larder-dev/larder/redistest"
	"github.com/larder-dev/larder/server"
)

// The credentials of the tests: bearer tokens by role and a Redis password.
const (
	readToken     = "read-token-5f1d8a0c2b7e4d93"
	writeToken    = "write-token-0b6e2c9d4a1f7e58"
	adminToken    = "admin-token-9c3a7e1b5d2f8064"
	wrongToken    = "wrong-token-1a2b3c4d5e6f7a8b"
	redisPassword = "redis-pass-6d0e4b8a2c9f1e37"
)

// securedProject appends server (and redis) settings to the demo project
// at config, writes the tokens file the settings name next to it, and
// returns the new project file.
func securedProject(tb testing.TB, config, name, settings string) string {
	tb.Helper()
	dir := filepath.Dir(config)
	tokens := "# holder role token\nrecs read " + readToken + "\nops admin " + adminToken + "\n"
	if err := os.WriteFile(filepath.Join(dir, "tokens"), []byte(tokens), 0o600); err != nil {
		tb.Fatal(err)
	}
	src, err := os.ReadFile(config)
	if err != nil {
		tb.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, append(src, "\n"+settings...), 0o644); err != nil {
		tb.Fatal(err)
	}
	return path
}

// writeSecret writes a file holding s alone, readable by its owner only.
func writeSecret(tb testing.TB, dir, name, s string) string {
	tb.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(s+"\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

// TestServeTLSAuth runs larder serve with TLS and bearer tokens, from a
// file and from the environment, and calls it with larder rank and larder
// reload: a plaintext client is refused, a missing or wrong token is
// UNAUTHENTICATED, a read token may rank but not reload, an admin token
// may reload, the project file's TLS settings are used when the address
// comes from it, and every admin call leaves an audit line naming its
// caller.
func TestServeTLSAuth(t *testing.T) {
	ds, config := demoProject(t)
	dir := filepath.Dir(config)
	pki := redistest.NewPKI(t)
	redis := redistest.Start(t)
	secured := securedProject(t, config, "secured.yaml", fmt.Sprintf(`server:
  tls_cert_file: %s
  tls_key_file: %s
  auth:
    tokens_file: tokens
    tokens_env: LARDER_TOKENS
`, pki.ServerCert, pki.ServerKey))
	// Only serve reads the tokens: the other commands run without them.
	mustSucceed(t, larderAt(t, t.Context(), t0, "--redis", redis.Addr, "-c", secured, "materialize"), "materialize without LARDER_TOKENS")
	t.Setenv("LARDER_TOKENS", "ingest write "+writeToken)
	srv := startServe(t, "--redis", redis.Addr, "-c", secured, "serve", "--listen", "127.0.0.1:0")
	if !strings.Contains(srv.log(), "security: TLS, authentication by 3 tokens\n") {
		t.Errorf("serve does not say how it is secured:\n%s", srv.log())
	}
	user := strconv.FormatInt(ds.SampleUsers(1)[0], 10)
	readFile := writeSecret(t, dir, "read.token", readToken)
	adminFile := writeSecret(t, dir, "admin.token", adminToken)
	ctx := t.Context()
	rank := func(args ...string) result {
		return larderAt(t, ctx, t0, append([]string{"-c", secured, "rank", demo.RankerName, user, "--request", "hour_of_day=9", "--addr", srv.addr}, args...)...)
	}
	reload := func(args ...string) result {
		return larderAt(t, ctx, t0, append([]string{"-c", secured, "reload", demo.RankerName, "--addr", srv.addr}, args...)...)
	}
	for _, tc := range []struct {
		name string
		run  result
		want []string // in stderr, for a failure; nil for success
	}{
		{"plaintext", rank("--token", readToken, "--timeout", "5s"), []string{"Unavailable", "if the server speaks TLS (server.tls_cert_file), pass --tls and --ca-file"}},
		{"no token", rank("--tls", "--ca-file", pki.CAFile), []string{"Unauthenticated", "no credential", "present a token with --token-file, --token or LARDER_TOKEN"}},
		{"a wrong token", rank("--ca-file", pki.CAFile, "--token", wrongToken), []string{"Unauthenticated: invalid bearer token"}},
		{"another authority", rank("--ca-file", pki.OtherCAFile, "--token", readToken), []string{"Unavailable", "check --ca-file"}},
		{"a wrong server name", rank("--ca-file", pki.CAFile, "--server-name", "larder.example", "--token", readToken), []string{"Unavailable", "--server-name"}},
		{"a read token", rank("--ca-file", pki.CAFile, "--token-file", readFile), nil},
		{"a write token from the environment", rank("--ca-file", pki.CAFile, "--token", writeToken), nil},
		{"reload with a read token", reload("--ca-file", pki.CAFile, "--token-file", readFile), []string{"PermissionDenied", "needs the admin role; token recs has read"}},
		{"reload with an admin token", reload("--ca-file", pki.CAFile, "--token-file", adminFile), nil},
		{"reload by name", reload("--ca-file", pki.CAFile, "--server-name", "localhost", "--token", adminToken), nil},
		{"two tokens", reload("--ca-file", pki.CAFile, "--token", adminToken, "--token-file", adminFile), []string{"give --token or --token-file, not both"}},
		{"a client certificate without its key", reload("--ca-file", pki.CAFile, "--cert-file", pki.ClientCert), []string{"--cert-file needs --key-file"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.run
			if tc.want == nil {
				mustSucceed(t, r, tc.name)
				return
			}
			if r.code == 0 {
				t.Fatalf("exit 0, stdout %q; want a failure", r.stdout)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr %q does not say %q", r.stderr, w)
				}
			}
		})
	}
	t.Run("LARDER_TOKEN", func(t *testing.T) {
		t.Setenv("LARDER_TOKEN", readToken)
		mustSucceed(t, rank("--ca-file", pki.CAFile), "rank with LARDER_TOKEN")
	})
	t.Run("a token in clear text to another machine", func(t *testing.T) {
		r := larderAt(t, ctx, t0, "-c", secured, "reload", demo.RankerName, "--addr", "192.0.2.1:50051", "--token", adminToken)
		if r.code == 0 || !strings.Contains(r.stderr, "a bearer token would cross the network to 192.0.2.1:50051 in clear text: pass --tls") {
			t.Errorf("exit %d, stderr %q; want a refusal to send the token", r.code, r.stderr)
		}
	})
	t.Run("the project file's settings", func(t *testing.T) {
		// The address and the TLS settings come from the project file:
		// TLS is on, and the server's own certificate is trusted.
		client := securedProject(t, config, "client.yaml", fmt.Sprintf("server:\n  listen: %s\n  tls_cert_file: %s\n  tls_key_file: %s\n", srv.addr, pki.ServerCert, pki.ServerKey))
		r := larderAt(t, ctx, t0, "-c", client, "reload", demo.RankerName, "--token-file", adminFile)
		mustSucceed(t, r, "reload from the project file")
		if !strings.Contains(r.stdout, "(unchanged)") {
			t.Errorf("reload printed %q", r.stdout)
		}
		r = larderAt(t, ctx, t0, "-c", client, "rank", demo.RankerName, user, "--request", "hour_of_day=9", "--token-file", readFile)
		mustSucceed(t, r, "rank from the project file")
	})
	t.Run("audit", func(t *testing.T) {
		log := srv.log()
		for _, re := range []string{
			`msg=audit method=/larder.v1.AdminService/ReloadModel caller=recs auth=token role=read peer=127\.0\.0\.1:\d+ code=PermissionDenied`,
			`msg=audit method=/larder.v1.AdminService/ReloadModel caller=ops auth=token role=admin peer=127\.0\.0\.1:\d+ code=OK`,
		} {
			if !regexp.MustCompile(re).MatchString(log) {
				t.Errorf("serve's log lacks %s:\n%s", re, log)
			}
		}
		if n := strings.Count(log, "msg=audit"); n != 4 {
			t.Errorf("%d audit lines, want 4: one per reload that reached the server", n)
		}
	})
}

// TestServeMutualTLS runs larder serve with client certificates: a client
// without one is refused, one whose common name is given the admin role
// reloads, and one without a role is refused.
func TestServeMutualTLS(t *testing.T) {
	t.Parallel()
	_, config := demoProject(t)
	pki := redistest.NewPKI(t)
	redis := redistest.Start(t)
	secured := securedProject(t, config, "mtls.yaml", fmt.Sprintf(`server:
  tls_cert_file: %s
  tls_key_file: %s
  tls_client_ca_file: %s
  auth:
    certificates:
      - {identity: ops-cli, role: admin}
`, pki.ServerCert, pki.ServerKey, pki.CAFile))
	mustSucceed(t, larderAt(t, t.Context(), t0, "--redis", redis.Addr, "-c", secured, "materialize"), "materialize")
	srv := startServe(t, "--redis", redis.Addr, "-c", secured, "serve", "--listen", "127.0.0.1:0")
	if !strings.Contains(srv.log(), "security: TLS with client certificates (mutual TLS), authentication by 1 certificate identity\n") {
		t.Errorf("serve does not say how it is secured:\n%s", srv.log())
	}
	reload := func(args ...string) result {
		return larderAt(t, t.Context(), t0, append([]string{"-c", secured, "reload", demo.RankerName, "--addr", srv.addr, "--ca-file", pki.CAFile, "--timeout", "10s"}, args...)...)
	}
	opsCert, opsKey := pki.ClientCertificate(t, "ops-cli")
	otherCert, otherKey := pki.OtherClientCertificate(t, "ops-cli")

	if r := reload(); r.code == 0 || !strings.Contains(r.stderr, "Unavailable") {
		t.Errorf("reload without a certificate: exit %d, stderr %q; want Unavailable", r.code, r.stderr)
	}
	if r := reload("--cert-file", otherCert, "--key-file", otherKey); r.code == 0 {
		t.Errorf("reload with a certificate of another authority: exit 0")
	}
	mustSucceed(t, reload("--cert-file", opsCert, "--key-file", opsKey), "reload as ops-cli")
	if r := reload("--cert-file", pki.ClientCert, "--key-file", pki.ClientKey); r.code == 0 || !strings.Contains(r.stderr, `PermissionDenied: the client certificate of "client" has no role`) {
		t.Errorf("reload with a certificate without a role: exit %d, stderr %q; want PermissionDenied", r.code, r.stderr)
	}
	if !regexp.MustCompile(`msg=audit method=/larder.v1.AdminService/ReloadModel caller=ops-cli auth=certificate role=admin peer=127\.0\.0\.1:\d+ code=OK`).MatchString(srv.log()) {
		t.Errorf("no audit line for the reload of ops-cli:\n%s", srv.log())
	}
}

// TestServeWarnings checks that serve warns of a tokens file other users
// may read, and of nothing on a loopback address; and that a bad tokens
// file stops serve, naming the setting and the line, not the token.
func TestServeWarnings(t *testing.T) {
	t.Parallel()
	_, config := demoProject(t)
	dir := filepath.Dir(config)
	redis := redistest.Start(t)
	mustSucceed(t, larderAt(t, t.Context(), t0, "--redis", redis.Addr, "-c", config, "materialize"), "materialize")

	open := securedProject(t, config, "open.yaml", "server:\n  auth:\n    tokens_file: tokens\n")
	if err := os.Chmod(filepath.Join(dir, "tokens"), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := startServe(t, "--redis", redis.Addr, "-c", open, "serve", "--listen", "127.0.0.1:0")
	if !strings.Contains(srv.log(), "tokens may be read by other users (mode 0644): chmod 600 it") {
		t.Errorf("no warning about the mode of the tokens file:\n%s", srv.log())
	}
	if strings.Contains(srv.log(), "beyond this machine") {
		t.Errorf("a warning about a loopback listener:\n%s", srv.log())
	}
	srv.cancel()

	if err := os.WriteFile(filepath.Join(dir, "tokens"), []byte("ops "+adminToken+" admin\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := larderAt(t, t.Context(), t0, "--redis", redis.Addr, "-c", open, "serve", "--listen", "127.0.0.1:0")
	want := "server.auth.tokens_file " + filepath.Join(dir, "tokens") + ": line 1: the role (second field) is not read, write or admin"
	if r.code == 0 || !strings.Contains(r.stderr, want) || strings.Contains(r.stderr, adminToken) {
		t.Errorf("serve with a bad tokens file: exit %d, stderr %q; want a failure saying %q, without the token", r.code, r.stderr, want)
	}
	r = larderAt(t, t.Context(), t0, "--redis", redis.Addr, "-c", config, "serve", "--listen", "127.0.0.1:0", "--tls-cert-file", "server.pem")
	if r.code == 0 || !strings.Contains(r.stderr, "--tls-cert-file needs --tls-key-file") {
		t.Errorf("serve --tls-cert-file alone: exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestSecretsNeverLeak runs serve with TLS, tokens and a Redis password,
// makes calls that succeed and calls that fail (wrong tokens, weak roles,
// Redis down), and checks that no token, no password and no key appear in
// serve's logs, in the errors its clients get, in the CLI's output or on
// its /metrics page.
func TestSecretsNeverLeak(t *testing.T) {
	ds, config := demoProject(t)
	pki := redistest.NewPKI(t)
	redis := redistest.StartUser(t, "larder", redisPassword)
	secured := securedProject(t, config, "secured.yaml", fmt.Sprintf(`redis:
  addresses: [%q]
  username: larder
  password_env: LARDER_REDIS_PASSWORD
server:
  tls_cert_file: %s
  tls_key_file: %s
  auth:
    tokens_file: tokens
    tokens_env: LARDER_TOKENS
`, redis.Addr, pki.ServerCert, pki.ServerKey))
	t.Setenv("LARDER_REDIS_PASSWORD", redisPassword)
	t.Setenv("LARDER_TOKENS", "ingest write "+writeToken)
	key, err := os.ReadFile(pki.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	wrongPassword := "wrong-pass-3e9d1c7b5a0f2e84"
	secrets := map[string]string{"the read token": readToken, "the write token": writeToken, "the admin token": adminToken,
		"the wrong token": wrongToken, "the Redis password": redisPassword, "a wrong Redis password": wrongPassword,
		"the server's key": strings.Split(string(key), "\n")[1]}
	var seen []string // everything a secret must not be in
	check := func(r result) result {
		seen = append(seen, r.stdout, r.stderr)
		return r
	}

	mustSucceed(t, check(larderAt(t, t.Context(), t0, "-c", secured, "materialize")), "materialize")
	srv := startServe(t, "-c", secured, "--log-level", "debug", "serve", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0")
	m := metricsLine.FindStringSubmatch(srv.log())
	if m == nil {
		t.Fatalf("serve did not print its metrics address:\n%s", srv.log())
	}
	user := strconv.FormatInt(ds.SampleUsers(1)[0], 10)
	ctx := t.Context()

	// Through the CLI.
	cli := func(args ...string) result {
		return check(larderAt(t, ctx, t0, append([]string{"-c", secured}, args...)...))
	}
	rankArgs := []string{"rank", demo.RankerName, user, "--request", "hour_of_day=9", "--addr", srv.addr, "--ca-file", pki.CAFile}
	mustSucceed(t, cli(append(rankArgs, "--token", readToken)...), "rank")
	for _, args := range [][]string{
		append(rankArgs, "--token", wrongToken),
		{"reload", demo.RankerName, "--addr", srv.addr, "--ca-file", pki.CAFile, "--token", readToken},
		{"reload", demo.RankerName, "--addr", srv.addr, "--ca-file", pki.CAFile, "--token", wrongToken},
		{"reload", "nope", "--addr", srv.addr, "--ca-file", pki.CAFile, "--token", adminToken},
	} {
		if r := cli(args...); r.code == 0 {
			t.Errorf("larder %v succeeded, want a failure", args)
		}
	}
	mustSucceed(t, cli("reload", demo.RankerName, "--addr", srv.addr, "--ca-file", pki.CAFile, "--token", adminToken), "reload")

	// Through a client of its own, which sees the errors as they are.
	caPEM, err := os.ReadFile(pki.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	conn, err := grpc.NewClient(srv.addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	features, admin := larderv1.NewFeatureServiceClient(conn), larderv1.NewAdminServiceClient(conn)
	get := &larderv1.GetFeaturesRequest{Keys: []*larderv1.EntityKey{int64Key(ds.SampleUsers(1)[0])}, Features: []string{"user_profile:age"}}
	call := func(token string, f func(context.Context) error) error {
		c, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token), 10*time.Second)
		defer cancel()
		err := f(c)
		if err != nil {
			seen = append(seen, status.Convert(err).Message(), err.Error())
		}
		return err
	}
	calls := func(want codes.Code, token, which string) {
		t.Helper()
		for name, f := range map[string]func(context.Context) error{
			"GetFeatures": func(c context.Context) error { _, err := features.GetFeatures(c, get); return err },
			"ListViews": func(c context.Context) error {
				_, err := features.ListViews(c, &larderv1.ListViewsRequest{})
				return err
			},
			"ListModels": func(c context.Context) error {
				_, err := admin.ListModels(c, &larderv1.ListModelsRequest{})
				return err
			},
		} {
			if err := call(token, f); status.Code(err) != want {
				t.Errorf("%s with %s: %v, want %s", name, which, err, want)
			}
		}
	}
	calls(codes.OK, readToken, "the read token")
	calls(codes.Unauthenticated, wrongToken, "a wrong token")
	calls(codes.Unauthenticated, "", "an empty token")
	if err := call(writeToken, func(c context.Context) error {
		_, err := admin.ReloadModel(c, &larderv1.ReloadModelRequest{Ranker: demo.RankerName})
		return err
	}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("ReloadModel with the write token: %v, want PermissionDenied", err)
	}
	// Redis down: the store's errors reach the logs and the clients.
	redis.Stop()
	if err := call(readToken, func(c context.Context) error { _, err := features.GetFeatures(c, get); return err }); err == nil {
		t.Error("GetFeatures with Redis down succeeded")
	}
	_ = call(readToken, func(c context.Context) error {
		_, err := features.ListViews(c, &larderv1.ListViewsRequest{})
		return err
	})
	redis.Restart()
	// A wrong Redis password, through a command that reports it.
	t.Setenv("LARDER_REDIS_PASSWORD", wrongPassword)
	if r := cli("views"); r.code == 0 || !strings.Contains(r.stderr, "WRONGPASS") {
		t.Errorf("views with a wrong Redis password: exit %d, stderr %q; want WRONGPASS", r.code, r.stderr)
	}

	resp, err := http.Get(m[1])
	if err != nil {
		t.Fatal(err)
	}
	page, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !strings.Contains(string(page), `code="Unauthenticated"`) {
		t.Fatalf("/metrics: %v; want the refused requests counted:\n%s", err, page)
	}
	seen = append(seen, string(page), srv.log())
	if !strings.Contains(srv.log(), "msg=audit") || !strings.Contains(srv.log(), "level=WARN") {
		t.Errorf("serve's log holds no audit line, or no warning of Redis down:\n%s", srv.log())
	}
	for what, secret := range secrets {
		for _, s := range seen {
			if strings.Contains(s, secret) {
				t.Errorf("%s appears in:\n%s", what, s)
				break
			}
		}
	}
}

// addrListener is a net.Listener that only has an address, for warnExposed.
type addrListener struct {
	net.Listener
	addr net.Addr
}

func (l addrListener) Addr() net.Addr { return l.addr }

// TestWarnExposed checks serve's warning about listeners other machines
// may reach: without authentication, or with tokens but no TLS; and none
// on loopback, or with a client CA.
func TestWarnExposed(t *testing.T) {
	at := func(ip string) net.Listener {
		return addrListener{addr: &net.TCPAddr{IP: net.ParseIP(ip), Port: 50051}}
	}
	auth, err := server.NewAuth([]server.Token{{Name: "ops", Role: larder.RoleAdmin, Secret: adminToken}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		sec       *serverSecurity
		clientCA  string
		listeners []net.Listener
		want      string
	}{
		{"open on every address", &serverSecurity{}, "", []net.Listener{at("0.0.0.0")},
			"warning: serving on 0.0.0.0:50051, beyond this machine, with no authentication: anyone who reaches it may call every method, model reloads and jobs included; set server.auth"},
		{"open on two", &serverSecurity{}, "", []net.Listener{at("10.0.0.5"), at("::"), nil}, "serving on 10.0.0.5:50051 and [::]:50051, beyond this machine, with no authentication"},
		{"loopback", &serverSecurity{}, "", []net.Listener{at("127.0.0.1"), at("::1")}, ""},
		{"one loopback, one not", &serverSecurity{}, "", []net.Listener{at("127.0.0.1"), at("10.0.0.5")}, "serving on 10.0.0.5:50051, beyond"},
		{"tokens without TLS", &serverSecurity{auth: auth, tokens: true}, "", []net.Listener{at("0.0.0.0")}, "without TLS: bearer tokens cross the network in clear text"},
		{"tokens over TLS", &serverSecurity{auth: auth, tokens: true, tls: &tls.Config{}}, "", []net.Listener{at("0.0.0.0")}, ""},
		{"client certificates", &serverSecurity{tls: &tls.Config{}}, "ca.pem", []net.Listener{at("0.0.0.0")}, ""},
		{"the demo's own server", nil, "", []net.Listener{at("0.0.0.0")}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr strings.Builder
			a := &app{stderr: &stderr}
			p := &larder.Project{Server: larder.Server{TLSClientCAFile: tc.clientCA}}
			a.warnExposed(p, tc.sec, tc.listeners...)
			if tc.want == "" && stderr.Len() > 0 || !strings.Contains(stderr.String(), tc.want) || strings.Count(stderr.String(), "\n") > 1 {
				t.Errorf("warned %q, want one line with %q", stderr.String(), tc.want)
			}
		})
	}
}
