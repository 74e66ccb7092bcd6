package server_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"

	"github.com/larder-dev/larder"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
	"github.com/larder-dev/larder/redistest"
	"github.com/larder-dev/larder/server"
)

// Tokens of the tests, by role. Each is long enough for ParseTokens.
const (
	readToken  = "read-token-0123456789abcdef"
	writeToken = "write-token-0123456789abcdef"
	adminToken = "admin-token-0123456789abcdef"
	wrongToken = "wrong-token-0123456789abcdef"
)

func TestParseTokens(t *testing.T) {
	t.Run("a file", func(t *testing.T) {
		text := "# name role token\n\nrecs read " + readToken + "\r\n  ingest\twrite " + writeToken + "  \nops admin " + adminToken + "\n# ops admin old-token, kept for a day\n"
		got, err := server.ParseTokens(text, "tokens")
		if err != nil {
			t.Fatal(err)
		}
		want := []server.Token{{"recs", larder.RoleRead, readToken}, {"ingest", larder.RoleWrite, writeToken}, {"ops", larder.RoleAdmin, adminToken}}
		if fmt.Sprint(got) != fmt.Sprint(want) || len(got) != 3 || got[0].Secret != readToken || got[2].Secret != adminToken {
			t.Errorf("tokens = %v, want %v", got, want)
		}
	})
	t.Run("entries separated by commas", func(t *testing.T) {
		got, err := server.ParseTokens("recs read "+readToken+", ops admin "+adminToken+",", "LARDER_TOKENS")
		if err != nil || len(got) != 2 || got[1].Name != "ops" || got[1].Secret != adminToken {
			t.Errorf("tokens = %v, %v", got, err)
		}
	})
	t.Run("printed", func(t *testing.T) {
		tok := server.Token{Name: "ops", Role: larder.RoleAdmin, Secret: adminToken}
		for _, s := range []string{fmt.Sprint(tok), fmt.Sprintf("%v %+v %#v %s", tok, tok, tok, tok), fmt.Sprint([]server.Token{tok})} {
			if strings.Contains(s, adminToken) {
				t.Errorf("a printed Token shows its secret: %s", s)
			}
		}
	})
	for _, tc := range []struct {
		name, text, want string
	}{
		{"two fields", "recs " + readToken, "tokens: line 1: want three fields, name role token; got 2"},
		{"four fields", "recs read " + readToken + " extra", "got 4"},
		{"fields out of order", "recs " + readToken + " read", "line 1: the role (second field) is not read, write or admin, or the fields are not in the order name role token"},
		{"token first", readToken + "! read recs", "the name (first field) is not"},
		{"unknown role", "recs root " + readToken, "the role (second field)"},
		{"short token", "# tokens\nrecs read abc123", "tokens: line 2: the token (third field) is 6 characters long; use at least 16"},
		{"bad characters", "recs read " + readToken + "!", "holds a character other than letters, digits and -._~+/="},
		{"long token", "recs read " + strings.Repeat("a", 1025), "longer than 1024 characters"},
		{"an entry of several", "recs read " + readToken + ", ops admin", "tokens: line 1, entry 2: want three fields"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := server.ParseTokens(tc.text, "tokens")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseTokens(%q) = %v, want an error containing %q", tc.text, err, tc.want)
			}
			if strings.Contains(err.Error(), readToken) || strings.Contains(err.Error(), "abc123") {
				t.Errorf("the error repeats the token: %v", err)
			}
		})
	}
}

func TestReadTokens(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "tokens")
	if err := os.WriteFile(file, []byte("ops admin "+adminToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := func(vars map[string]string) func(string) (string, bool) {
		return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
	}
	got, err := server.ReadTokens(larder.ServerAuth{TokensFile: file, TokensEnv: "LARDER_TOKENS"}, env(map[string]string{"LARDER_TOKENS": "recs read " + readToken}))
	if err != nil || len(got) != 2 || got[0].Name != "ops" || got[1].Name != "recs" {
		t.Errorf("ReadTokens = %v, %v; want ops and recs", got, err)
	}
	for _, tc := range []struct {
		name string
		auth larder.ServerAuth
		env  map[string]string
		want string
	}{
		{"missing file", larder.ServerAuth{TokensFile: filepath.Join(dir, "nope")}, nil, "server.auth.tokens_file: open " + filepath.Join(dir, "nope")},
		{"unset variable", larder.ServerAuth{TokensEnv: "LARDER_TOKENS"}, nil, "server.auth.tokens_env: environment variable LARDER_TOKENS is not set"},
		{"bad entry", larder.ServerAuth{TokensEnv: "LARDER_TOKENS"}, map[string]string{"LARDER_TOKENS": "recs read short"}, "server.auth.tokens_env LARDER_TOKENS: line 1: the token (third field) is 5 characters long"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := server.ReadTokens(tc.auth, env(tc.env)); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ReadTokens = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestNewAuth(t *testing.T) {
	if _, err := server.NewAuth(nil, nil); err == nil || !strings.Contains(err.Error(), "no token and no certificate identity") {
		t.Errorf("NewAuth with no credential = %v, want an error", err)
	}
	_, err := server.NewAuth([]server.Token{{"recs", larder.RoleRead, readToken}, {"ops", larder.RoleAdmin, readToken}}, nil)
	if err == nil || !strings.Contains(err.Error(), "recs and ops have the same token") || strings.Contains(err.Error(), readToken) {
		t.Errorf("NewAuth with one token twice = %v, want an error naming both holders and not the token", err)
	}
	// One holder may have two tokens, while one replaces the other.
	if _, err := server.NewAuth([]server.Token{{"ops", larder.RoleAdmin, adminToken}, {"ops", larder.RoleAdmin, wrongToken}}, nil); err != nil {
		t.Errorf("NewAuth with two tokens of one holder: %v", err)
	}
}

// TestAuthIdentify checks the credentials of listeners other than gRPC
// (the web console): a token names its holder and role, a certificate its
// identity's, and neither error repeats a token.
func TestAuthIdentify(t *testing.T) {
	auth, err := server.NewAuth([]server.Token{{"recs", larder.RoleRead, readToken}, {"ops", larder.RoleAdmin, adminToken}},
		[]larder.CertificateRole{{Identity: "batch.internal", Role: larder.RoleWrite}})
	if err != nil {
		t.Fatal(err)
	}
	cert := func(cn string, dns ...string) *x509.Certificate {
		return &x509.Certificate{Subject: pkix.Name{CommonName: cn}, DNSNames: dns, SerialNumber: big.NewInt(7)}
	}
	for _, tc := range []struct {
		name     string
		token    string
		cert     *x509.Certificate
		holder   string
		role     larder.Role
		errMatch string
	}{
		{name: "admin token", token: adminToken, holder: "ops", role: larder.RoleAdmin},
		{name: "read token", token: readToken, holder: "recs", role: larder.RoleRead},
		{name: "token over certificate", token: adminToken, cert: cert("nobody"), holder: "ops", role: larder.RoleAdmin},
		{name: "wrong token", token: wrongToken, errMatch: "invalid bearer token"},
		{name: "certificate by DNS name", cert: cert("host-1", "batch.internal"), holder: "batch.internal", role: larder.RoleWrite},
		{name: "certificate without a role", cert: cert("stranger"), holder: "stranger", errMatch: `"stranger" has no role`},
		{name: "nothing", errMatch: "no credential"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			holder, role, err := auth.Identify(tc.token, tc.cert)
			if holder != tc.holder || role != tc.role {
				t.Errorf("Identify = %q, %q; want %q, %q", holder, role, tc.holder, tc.role)
			}
			switch {
			case tc.errMatch == "" && err != nil:
				t.Errorf("Identify: %v", err)
			case tc.errMatch != "" && (err == nil || !strings.Contains(err.Error(), tc.errMatch)):
				t.Errorf("Identify error = %v, want one containing %q", err, tc.errMatch)
			case err != nil && tc.token != "" && strings.Contains(err.Error(), tc.token):
				t.Errorf("Identify error %q repeats the token", err)
			}
		})
	}
}

// secured is a Service served over TLS on loopback behind NewGRPC, with
// its logs (audit lines included) and the files of its certificates.
type secured struct {
	addr   string
	pki    *redistest.PKI
	logs   *syncBuffer
	loads  *atomic.Int64 // model loads by ReloadModel
	cancel context.CancelFunc
}

// secureConfig changes what serveSecured builds.
type secureConfig struct {
	auth     *server.Auth
	mutual   bool // ask clients for a certificate the PKI's CA signed
	noReflex bool
	admin    bool // serve the operators' services alone, as NewAdminGRPC
	jobs     bool // with a job queue, and so the JobService
	push     bool // over a store that takes pushes (a fakePush)
}

// serveSecured serves a Service of the test project with a fake model over
// TLS, with the certificates of a new PKI, until the test ends.
func serveSecured(tb testing.TB, sc secureConfig) *secured {
	tb.Helper()
	s := &secured{pki: redistest.NewPKI(tb), logs: &syncBuffer{}, loads: &atomic.Int64{}}
	logger := slog.New(slog.NewTextHandler(s.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	svc := newOpsService(tb, newFakeModel("v1", 1), func(cfg *server.Config) {
		cfg.Logger = logger
		cfg.Auth = sc.auth
		cfg.Project.Server.NoReflection = sc.noReflex
		if sc.jobs {
			cfg.Jobs = newFakeQueue(cfg.Now)
		}
		if sc.push {
			cfg.Store = newFakePush(cfg.Store, "user_stats")
		}
		cfg.LoadModel = func(*larder.Ranker) (server.Model, error) {
			n := s.loads.Add(1)
			return newFakeModel(fmt.Sprintf("v%d", n+1), 1), nil
		}
	})
	settings := larder.Server{TLSCertFile: s.pki.ServerCert, TLSKeyFile: s.pki.ServerKey}
	if sc.mutual {
		settings.TLSClientCAFile = s.pki.CAFile
	}
	cfg, err := server.TLSConfig(settings)
	if err != nil {
		tb.Fatal(err)
	}
	build := server.NewGRPC
	if sc.admin {
		build = server.NewAdminGRPC
	}
	g := build(svc, logger, grpc.Creds(credentials.NewTLS(cfg)))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s.addr = lis.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	done := make(chan error, 1)
	go func() { done <- g.Serve(ctx, lis, 5*time.Second) }()
	tb.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				tb.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			tb.Errorf("Serve did not return within 10s of its context ending")
		}
	})
	return s
}

// dial connects to s over TLS, trusting the PKI's authority, with the
// client certificate and key when given.
func (s *secured) dial(tb testing.TB, certFile, keyFile string) *grpc.ClientConn {
	tb.Helper()
	pem, err := os.ReadFile(s.pki.CAFile)
	if err != nil {
		tb.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			tb.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	conn, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)), server.CodecDialOption())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return conn
}

// withToken returns a context whose calls carry token as a bearer token.
func withToken(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

// auditLine matches an audit line of the text handler.
var auditLine = regexp.MustCompile(`msg=audit method=(\S+) caller=(\S+) auth=(\S+) role=(\S*) peer=(\S+) code=(\S+) duration=\S+`)

// auditEntry is one audit line.
type auditEntry struct{ method, caller, auth, role, peer, code string }

// audits returns the audit lines in logs.
func audits(logs string) []auditEntry {
	var out []auditEntry
	for _, m := range auditLine.FindAllStringSubmatch(logs, -1) {
		out = append(out, auditEntry{m[1], m[2], m[3], m[4], m[5], m[6]})
	}
	return out
}

func testAuth(tb testing.TB) *server.Auth {
	tb.Helper()
	a, err := server.NewAuth([]server.Token{
		{Name: "recs", Role: larder.RoleRead, Secret: readToken},
		{Name: "ingest", Role: larder.RoleWrite, Secret: writeToken},
		{Name: "ops", Role: larder.RoleAdmin, Secret: adminToken},
	}, []larder.CertificateRole{
		{Identity: "ops-cli", Role: larder.RoleAdmin},
		{Identity: "recs.shop.internal", Role: larder.RoleRead},
	})
	if err != nil {
		tb.Fatal(err)
	}
	return a
}

// TestAuthTokens serves over TLS with bearer tokens: a plaintext client is
// refused; a call without a token or with a wrong one is UNAUTHENTICATED;
// a role too weak for the method is PERMISSION_DENIED; health checks need
// nothing; reflection needs a token; every admin call is audited with its
// caller; ListModels shows paths to admins only; no token is ever logged.
func TestAuthTokens(t *testing.T) {
	s := serveSecured(t, secureConfig{auth: testAuth(t)})
	conn := s.dial(t, "", "")
	features := larderv1.NewFeatureServiceClient(conn)
	admin := larderv1.NewAdminServiceClient(conn)
	ctx := t.Context()

	t.Run("a plaintext client is refused", func(t *testing.T) {
		plain, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(insecure.NewCredentials()), server.CodecDialOption())
		if err != nil {
			t.Fatal(err)
		}
		defer plain.Close()
		call, cancel := context.WithTimeout(withToken(ctx, adminToken), 5*time.Second)
		defer cancel()
		_, err = larderv1.NewAdminServiceClient(plain).ReloadModel(call, &larderv1.ReloadModelRequest{Ranker: "reco"})
		wantCode(t, err, codes.Unavailable)
	})

	t.Run("100 anonymous reloads", func(t *testing.T) {
		before := len(audits(s.logs.String()))
		for range 100 {
			_, err := admin.ReloadModel(ctx, &larderv1.ReloadModelRequest{Ranker: "reco"})
			wantCode(t, err, codes.Unauthenticated, "no credential", "authorization: Bearer TOKEN")
		}
		if n := s.loads.Load(); n != 0 {
			t.Errorf("%d anonymous reloads loaded the model", n)
		}
		lines := audits(s.logs.String())[before:]
		if len(lines) != 100 {
			t.Fatalf("%d audit lines for 100 anonymous reloads, want 100", len(lines))
		}
		for _, l := range lines {
			if l.caller != "anonymous" || l.auth != "none" || l.code != "Unauthenticated" || l.method != "/larder.v1.AdminService/ReloadModel" ||
				!strings.HasPrefix(l.peer, "127.0.0.1:") {
				t.Fatalf("audit line %+v, want the anonymous caller, its peer, the method and Unauthenticated", l)
			}
		}
	})

	for _, tc := range []struct {
		name string
		md   []string // outgoing metadata, key and value pairs
		msg  string
	}{
		{"a wrong token", []string{"authorization", "Bearer " + wrongToken}, "invalid bearer token"},
		{"a token without its scheme", []string{"authorization", adminToken}, "not a bearer token"},
		{"basic authentication", []string{"authorization", "Basic b3BzOnNlY3JldA=="}, "not a bearer token"},
		{"two tokens", []string{"authorization", "Bearer " + readToken, "authorization", "Bearer " + adminToken}, "more than one authorization value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			call := metadata.AppendToOutgoingContext(ctx, tc.md...)
			_, err := features.Rank(call, rankRequest("i1", "i2"))
			wantCode(t, err, codes.Unauthenticated, tc.msg)
			_, err = admin.ReloadModel(call, &larderv1.ReloadModelRequest{Ranker: "reco"})
			wantCode(t, err, codes.Unauthenticated, tc.msg)
		})
	}
	t.Run("the scheme in any case", func(t *testing.T) {
		if _, err := features.Rank(metadata.AppendToOutgoingContext(ctx, "authorization", "bearer "+readToken), rankRequest("i1")); err != nil {
			t.Errorf("Rank with \"bearer TOKEN\": %v", err)
		}
	})

	t.Run("read", func(t *testing.T) {
		call := withToken(ctx, readToken)
		if _, err := features.Rank(call, rankRequest("i1", "i2")); err != nil {
			t.Errorf("Rank: %v", err)
		}
		if _, err := features.GetFeatures(call, &larderv1.GetFeaturesRequest{Keys: intKeys(1), Features: []string{"user_stats:clicks"}}); err != nil {
			t.Errorf("GetFeatures: %v", err)
		}
		if _, err := features.ListViews(call, &larderv1.ListViewsRequest{}); err != nil {
			t.Errorf("ListViews: %v", err)
		}
		_, err := admin.ReloadModel(call, &larderv1.ReloadModelRequest{Ranker: "reco"})
		wantCode(t, err, codes.PermissionDenied, "/larder.v1.AdminService/ReloadModel needs the admin role; token recs has read")
		models, err := admin.ListModels(call, &larderv1.ListModelsRequest{})
		if err != nil || len(models.GetModels()) != 1 || models.GetModels()[0].GetVersion() == "" {
			t.Fatalf("ListModels = %v, %v", models, err)
		}
		if p := models.GetModels()[0].GetPath(); p != "" {
			t.Errorf("ListModels shows the path %q to a caller with the read role", p)
		}
	})

	t.Run("write", func(t *testing.T) {
		call := withToken(ctx, writeToken)
		if _, err := features.Rank(call, rankRequest("i1", "i2")); err != nil {
			t.Errorf("Rank: %v", err)
		}
		_, err := admin.ReloadModel(call, &larderv1.ReloadModelRequest{Ranker: "reco"})
		wantCode(t, err, codes.PermissionDenied, "needs the admin role; token ingest has write")
		models, err := admin.ListModels(call, &larderv1.ListModelsRequest{})
		if err != nil || models.GetModels()[0].GetPath() != "" {
			t.Errorf("ListModels = %v, %v; want no path", models, err)
		}
	})

	t.Run("admin", func(t *testing.T) {
		call := withToken(ctx, adminToken)
		resp, err := admin.ReloadModel(call, &larderv1.ReloadModelRequest{Ranker: "reco"})
		if err != nil || resp.GetNewVersion() != "v2" {
			t.Fatalf("ReloadModel = %v, %v; want v2", resp, err)
		}
		models, err := admin.ListModels(call, &larderv1.ListModelsRequest{})
		if err != nil || !strings.HasSuffix(models.GetModels()[0].GetPath(), "reco.onnx") {
			t.Errorf("ListModels = %v, %v; want the path of reco.onnx", models, err)
		}
		if _, err := features.Rank(call, rankRequest("i1", "i2")); err != nil {
			t.Errorf("Rank: %v", err)
		}
	})

	t.Run("health needs no credential", func(t *testing.T) {
		resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("Check = %v, %v; want SERVING", resp, err)
		}
		watch, err := healthpb.NewHealthClient(conn).Watch(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if resp, err := watch.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("Watch = %v, %v; want SERVING", resp, err)
		}
	})

	t.Run("reflection needs a credential", func(t *testing.T) {
		_, err := listServices(ctx, conn)
		wantCode(t, err, codes.Unauthenticated)
		names, err := listServices(withToken(ctx, readToken), conn)
		if err != nil || !strings.Contains(strings.Join(names, " "), "larder.v1.FeatureService") {
			t.Errorf("reflection with a read token = %v, %v", names, err)
		}
	})

	t.Run("audit", func(t *testing.T) {
		var denied, reloaded, listed bool
		for _, l := range audits(s.logs.String()) {
			switch {
			case l.caller == "recs" && l.auth == "token" && l.role == "read" && l.code == "PermissionDenied" && l.method == "/larder.v1.AdminService/ReloadModel":
				denied = true
			case l.caller == "ops" && l.auth == "token" && l.role == "admin" && l.code == "OK" && l.method == "/larder.v1.AdminService/ReloadModel":
				reloaded = true
			case l.caller == "recs" && l.code == "OK" && l.method == "/larder.v1.AdminService/ListModels":
				listed = true
			}
			if l.method != "/larder.v1.AdminService/ReloadModel" && l.method != "/larder.v1.AdminService/ListModels" {
				t.Errorf("an audit line for %s: only the operators' services are audited", l.method)
			}
		}
		if !denied || !reloaded || !listed {
			t.Errorf("audit lines lack the refused reload of recs (%v), the reload of ops (%v) or the list of recs (%v):\n%s", denied, reloaded, listed, s.logs)
		}
		unknown := regexp.MustCompile(`msg=audit method=\S+ caller=unknown auth=token role=none peer=\S+ code=Unauthenticated`)
		if !unknown.MatchString(s.logs.String()) {
			t.Errorf("no audit line for the reload with a wrong token:\n%s", s.logs)
		}
	})

	t.Run("no token is logged", func(t *testing.T) {
		for _, tok := range []string{readToken, writeToken, adminToken, wrongToken} {
			if strings.Contains(s.logs.String(), tok) {
				t.Errorf("the logs hold the token %s", tok)
			}
		}
	})
}

// TestAuthJobs calls the JobService with each role: only admin may submit,
// read, list or cancel jobs, and every call is audited.
func TestAuthJobs(t *testing.T) {
	s := serveSecured(t, secureConfig{auth: testAuth(t), jobs: true})
	jobs := larderv1.NewJobServiceClient(s.dial(t, "", ""))
	ctx := t.Context()
	submit := materializeReq(nil, "user_stats")
	for _, token := range []string{readToken, writeToken} {
		call := withToken(ctx, token)
		_, err := jobs.SubmitJob(call, submit)
		wantCode(t, err, codes.PermissionDenied, "/larder.v1.JobService/SubmitJob needs the admin role")
		_, err = jobs.ListJobs(call, &larderv1.ListJobsRequest{})
		wantCode(t, err, codes.PermissionDenied, "needs the admin role")
	}
	_, err := jobs.ListJobs(ctx, &larderv1.ListJobsRequest{})
	wantCode(t, err, codes.Unauthenticated)

	call := withToken(ctx, adminToken)
	job, err := jobs.SubmitJob(call, submit)
	if err != nil {
		t.Fatalf("SubmitJob as admin: %v", err)
	}
	id := job.GetJob().GetId()
	if _, err := jobs.GetJob(call, &larderv1.GetJobRequest{Id: id}); err != nil {
		t.Errorf("GetJob as admin: %v", err)
	}
	if _, err := jobs.CancelJob(call, &larderv1.CancelJobRequest{Id: id}); err != nil {
		t.Errorf("CancelJob as admin: %v", err)
	}
	var denied, submitted int
	for _, l := range audits(s.logs.String()) {
		switch {
		case l.method == "/larder.v1.JobService/SubmitJob" && l.code == "PermissionDenied":
			denied++
		case l.method == "/larder.v1.JobService/SubmitJob" && l.code == "OK" && l.caller == "ops":
			submitted++
		}
	}
	if denied != 2 || submitted != 1 {
		t.Errorf("audit lines: %d refused submissions (want 2), %d by ops (want 1):\n%s", denied, submitted, s.logs)
	}
}

// listServices lists the services of the server at conn through
// reflection.
func listServices(ctx context.Context, conn *grpc.ClientConn) ([]string, error) {
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { _ = stream.CloseSend() }()
	// A stream the server ended says why on Recv, not on Send.
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil && err != io.EOF {
		return nil, err
	}
	resp, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	return names, nil
}

// TestAuthMutualTLS serves with mutual TLS: a client without a
// certificate, or with one another authority signed, is refused; one the
// authority signed gets the role its common name or DNS name is given,
// and PERMISSION_DENIED when it has none; a token still wins over the
// certificate it comes with.
func TestAuthMutualTLS(t *testing.T) {
	s := serveSecured(t, secureConfig{auth: testAuth(t), mutual: true})
	ctx := t.Context()
	reload := func(conn *grpc.ClientConn, ctx context.Context) error {
		_, err := larderv1.NewAdminServiceClient(conn).ReloadModel(ctx, &larderv1.ReloadModelRequest{Ranker: "reco"})
		return err
	}
	rank := func(conn *grpc.ClientConn, ctx context.Context) error {
		_, err := larderv1.NewFeatureServiceClient(conn).Rank(ctx, rankRequest("i1", "i2"))
		return err
	}

	t.Run("no certificate", func(t *testing.T) {
		conn := s.dial(t, "", "")
		call, cancel := context.WithTimeout(withToken(ctx, adminToken), 5*time.Second)
		defer cancel()
		if err := reload(conn, call); err == nil {
			t.Fatal("a client without a certificate reloaded a model")
		}
		_, err := healthpb.NewHealthClient(conn).Check(call, &healthpb.HealthCheckRequest{})
		wantCode(t, err, codes.Unavailable)
	})
	t.Run("a certificate of another authority", func(t *testing.T) {
		cert, key := s.pki.OtherClientCertificate(t, "ops-cli")
		call, cancel := context.WithTimeout(withToken(ctx, adminToken), 5*time.Second)
		defer cancel()
		if err := reload(s.dial(t, cert, key), call); err == nil {
			t.Fatal("a client whose certificate another authority signed reloaded a model")
		}
	})
	t.Run("admin by common name", func(t *testing.T) {
		cert, key := s.pki.ClientCertificate(t, "ops-cli")
		conn := s.dial(t, cert, key)
		if err := reload(conn, ctx); err != nil {
			t.Fatalf("ReloadModel: %v", err)
		}
		models, err := larderv1.NewAdminServiceClient(conn).ListModels(ctx, &larderv1.ListModelsRequest{})
		if err != nil || models.GetModels()[0].GetPath() == "" {
			t.Errorf("ListModels = %v, %v; want the path", models, err)
		}
	})
	t.Run("read by DNS name", func(t *testing.T) {
		cert, key := s.pki.ClientCertificate(t, "recs-7f9c", "recs.shop.internal")
		conn := s.dial(t, cert, key)
		if err := rank(conn, ctx); err != nil {
			t.Errorf("Rank: %v", err)
		}
		wantCode(t, reload(conn, ctx), codes.PermissionDenied, "needs the admin role; certificate recs.shop.internal has read")
	})
	t.Run("a certificate without a role", func(t *testing.T) {
		cert, key := s.pki.ClientCertificate(t, "intruder")
		conn := s.dial(t, cert, key)
		wantCode(t, rank(conn, ctx), codes.PermissionDenied, `the client certificate of "intruder" has no role in server.auth.certificates`)
		// Its token gives it a role.
		if err := reload(conn, withToken(ctx, adminToken)); err != nil {
			t.Errorf("ReloadModel with an admin token: %v", err)
		}
		wantCode(t, reload(conn, withToken(ctx, wrongToken)), codes.Unauthenticated, "invalid bearer token")
	})
	t.Run("audit", func(t *testing.T) {
		var byCert, refused, byToken bool
		for _, l := range audits(s.logs.String()) {
			switch {
			case l.caller == "ops-cli" && l.auth == "certificate" && l.role == "admin" && l.code == "OK":
				byCert = true
			case l.caller == "recs.shop.internal" && l.auth == "certificate" && l.code == "PermissionDenied":
				refused = true
			case l.caller == "ops" && l.auth == "token" && l.code == "OK":
				byToken = true
			}
		}
		if !byCert || !refused || !byToken {
			t.Errorf("audit lines lack the certificate ops-cli (%v), the refused recs.shop.internal (%v) or the token ops (%v):\n%s", byCert, refused, byToken, s.logs)
		}
	})
}

// TestAuthMutualTLSWithTokens serves with mutual TLS and tokens alone: the
// certificate only lets a client connect, and the token gives it its role.
func TestAuthMutualTLSWithTokens(t *testing.T) {
	auth, err := server.NewAuth([]server.Token{{Name: "recs", Role: larder.RoleRead, Secret: readToken}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := serveSecured(t, secureConfig{auth: auth, mutual: true})
	conn := s.dial(t, s.pki.ClientCert, s.pki.ClientKey)
	features := larderv1.NewFeatureServiceClient(conn)
	_, err = features.Rank(t.Context(), rankRequest("i1"))
	wantCode(t, err, codes.Unauthenticated, "no credential")
	if _, err := features.Rank(withToken(t.Context(), readToken), rankRequest("i1")); err != nil {
		t.Errorf("Rank with a read token: %v", err)
	}
	_, err = larderv1.NewAdminServiceClient(conn).ReloadModel(t.Context(), &larderv1.ReloadModelRequest{Ranker: "reco"})
	wantCode(t, err, codes.Unauthenticated)
	if lines := audits(s.logs.String()); len(lines) != 1 || lines[0].caller != "client" || lines[0].auth != "certificate" || lines[0].code != "Unauthenticated" {
		t.Errorf("audit lines %+v, want the refused reload of the certificate client", lines)
	}
}

// TestAuditWithoutAuth serves with no authentication, as a server always
// did: every call is allowed, ListModels shows paths, and the admin calls
// are still audited, naming the peer and, over mutual TLS, the
// certificate.
func TestAuditWithoutAuth(t *testing.T) {
	s := serveSecured(t, secureConfig{mutual: true})
	cert, key := s.pki.ClientCertificate(t, "ops-cli")
	conn := s.dial(t, cert, key)
	ctx := t.Context()
	if _, err := larderv1.NewAdminServiceClient(conn).ReloadModel(ctx, &larderv1.ReloadModelRequest{Ranker: "reco"}); err != nil {
		t.Fatalf("ReloadModel: %v", err)
	}
	models, err := larderv1.NewAdminServiceClient(conn).ListModels(ctx, &larderv1.ListModelsRequest{})
	if err != nil || models.GetModels()[0].GetPath() == "" {
		t.Errorf("ListModels = %v, %v; want the path", models, err)
	}
	lines := audits(s.logs.String())
	if len(lines) != 2 || lines[0].caller != "ops-cli" || lines[0].auth != "certificate" || lines[0].role != "none" || lines[0].code != "OK" ||
		!strings.HasPrefix(lines[0].peer, "127.0.0.1:") {
		t.Errorf("audit lines %+v, want the reload and the list by certificate ops-cli", lines)
	}

	// Without a client certificate, the caller is anonymous.
	plain := serveSecured(t, secureConfig{})
	if _, err := larderv1.NewAdminServiceClient(plain.dial(t, "", "")).ReloadModel(ctx, &larderv1.ReloadModelRequest{Ranker: "reco"}); err != nil {
		t.Fatalf("ReloadModel: %v", err)
	}
	if lines := audits(plain.logs.String()); len(lines) != 1 || lines[0].caller != "anonymous" || lines[0].code != "OK" {
		t.Errorf("audit lines %+v, want one reload by anonymous", lines)
	}
}

// TestReflectionOff turns reflection off: neither the main server nor the
// admin one answers it; health checks still answer.
func TestReflectionOff(t *testing.T) {
	for _, admin := range []bool{false, true} {
		t.Run(fmt.Sprintf("admin=%v", admin), func(t *testing.T) {
			s := serveSecured(t, secureConfig{noReflex: true, admin: admin})
			conn := s.dial(t, "", "")
			_, err := listServices(t.Context(), conn)
			wantCode(t, err, codes.Unimplemented)
			resp, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{})
			if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				t.Errorf("Check = %v, %v; want SERVING", resp, err)
			}
		})
	}
	// On by default.
	s := serveSecured(t, secureConfig{})
	if names, err := listServices(t.Context(), s.dial(t, "", "")); err != nil || len(names) == 0 {
		t.Errorf("reflection by default = %v, %v; want the services", names, err)
	}
}

// TestTLSConfig checks the errors of server.TLSConfig: each names the
// setting and the file.
func TestTLSConfig(t *testing.T) {
	pki := redistest.NewPKI(t)
	if cfg, err := server.TLSConfig(larder.Server{}); cfg != nil || err != nil {
		t.Errorf("TLSConfig without a certificate = %v, %v; want nil, nil", cfg, err)
	}
	cfg, err := server.TLSConfig(larder.Server{TLSCertFile: pki.ServerCert, TLSKeyFile: pki.ServerKey, TLSClientCAFile: pki.CAFile})
	if err != nil || cfg.ClientAuth != tls.RequireAndVerifyClientCert || cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("TLSConfig = %+v, %v; want mutual TLS 1.2 or later", cfg, err)
	}
	missing := filepath.Join(pki.Dir, "missing.pem")
	for _, tc := range []struct {
		name string
		s    larder.Server
		want string
	}{
		{"missing certificate", larder.Server{TLSCertFile: missing, TLSKeyFile: pki.ServerKey}, "server.tls_cert_file " + missing + " and server.tls_key_file"},
		{"key of another certificate", larder.Server{TLSCertFile: pki.ServerCert, TLSKeyFile: pki.ClientKey}, "server.tls_cert_file"},
		{"missing client CA", larder.Server{TLSCertFile: pki.ServerCert, TLSKeyFile: pki.ServerKey, TLSClientCAFile: missing}, "server.tls_client_ca_file: open " + missing},
		{"a client CA that is no certificate", larder.Server{TLSCertFile: pki.ServerCert, TLSKeyFile: pki.ServerKey, TLSClientCAFile: pki.ServerKey},
			"server.tls_client_ca_file " + pki.ServerKey + " holds no PEM certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := server.TLSConfig(tc.s); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("TLSConfig = %v, want an error containing %q", err, tc.want)
			}
		})
	}
	// The key's content is never in the error.
	_, err = server.TLSConfig(larder.Server{TLSCertFile: pki.ServerKey, TLSKeyFile: pki.ServerCert})
	if key, _ := os.ReadFile(pki.ServerKey); err == nil || strings.Contains(err.Error(), strings.Split(string(key), "\n")[1]) {
		t.Errorf("TLSConfig with the files swapped = %v, want an error without the key", err)
	}
}
