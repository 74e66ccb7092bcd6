package main

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/server"
)

// serverSecurity is what serve secures its listeners with, read from the
// files and the environment the project's server block names.
type serverSecurity struct {
	tls  *tls.Config  // nil: plaintext
	auth *server.Auth // nil: every caller may call everything
	// tokens says that auth takes bearer tokens, which must not cross a
	// network in clear text.
	tokens bool
}

// loadSecurity reads the server's certificate, its client authorities and
// its tokens, as p's server block names them. It returns an error naming
// the setting, the file and the problem, and never a token; and it warns
// on standard error about a tokens file other users may read.
func (a *app) loadSecurity(p *larder.Project) (*serverSecurity, error) {
	s := p.Server
	for _, f := range []*string{&s.TLSCertFile, &s.TLSKeyFile, &s.TLSClientCAFile, &s.Auth.TokensFile} {
		*f = p.Path(*f)
	}
	sec := &serverSecurity{}
	var err error
	if sec.tls, err = server.TLSConfig(s); err != nil {
		return nil, fmt.Errorf("%s: %w", a.configPath, err)
	}
	if !s.Auth.On() {
		return sec, nil
	}
	tokens, err := server.ReadTokens(s.Auth, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", a.configPath, err)
	}
	if sec.auth, err = server.NewAuth(tokens, s.Auth.Certificates); err != nil {
		return nil, fmt.Errorf("%s: %w", a.configPath, err)
	}
	sec.tokens = len(tokens) > 0
	if s.Auth.TokensFile != "" {
		if fi, err := os.Stat(s.Auth.TokensFile); err == nil && fi.Mode().Perm()&0o077 != 0 {
			fmt.Fprintf(a.stderr, "warning: server.auth.tokens_file %s may be read by other users (mode %04o): chmod 600 it\n", s.Auth.TokensFile, fi.Mode().Perm())
		}
	}
	return sec, nil
}

// serverOptions returns the gRPC options of the listeners: TLS, if any.
func (sec *serverSecurity) serverOptions() []grpc.ServerOption {
	if sec == nil || sec.tls == nil {
		return nil
	}
	return []grpc.ServerOption{grpc.Creds(credentials.NewTLS(sec.tls))}
}

// warnExposed prints one line for listeners that other machines may reach
// with no credential asked, and one for bearer tokens that would cross a
// network in clear text. A client CA counts as a credential: only clients
// with a certificate it signed get in.
func (a *app) warnExposed(p *larder.Project, sec *serverSecurity, listeners ...net.Listener) {
	var exposed []string
	for _, lis := range listeners {
		if lis == nil {
			continue
		}
		if addr, ok := lis.Addr().(*net.TCPAddr); ok && !addr.IP.IsLoopback() {
			exposed = append(exposed, lis.Addr().String())
		}
	}
	if len(exposed) == 0 {
		return
	}
	where := strings.Join(exposed, " and ")
	switch {
	case sec == nil:
	case sec.auth == nil && p.Server.TLSClientCAFile == "":
		fmt.Fprintf(a.stderr, "warning: serving on %s, beyond this machine, with no authentication: anyone who reaches it may call every method, model reloads and jobs included; set server.auth (see docs/operations.md, Securing larder)\n", where)
	case sec.tokens && sec.tls == nil:
		fmt.Fprintf(a.stderr, "warning: serving on %s, beyond this machine, without TLS: bearer tokens cross the network in clear text; set server.tls_cert_file and server.tls_key_file\n", where)
	}
}

// auditLogger returns the logger of the audit lines: standard error, at
// level INFO whatever --log-level says, since an audit log that a log level
// can silence is not one, in the format --log-format names.
func (a *app) auditLogger() *slog.Logger {
	return a.newLogger(slog.LevelInfo)
}

// describe says in one line how serve's listeners are secured.
func (sec *serverSecurity) describe(p *larder.Project) string {
	var parts []string
	switch {
	case sec.tls == nil:
		parts = append(parts, "plaintext gRPC (no TLS)")
	case p.Server.TLSClientCAFile != "":
		parts = append(parts, "TLS with client certificates (mutual TLS)")
	default:
		parts = append(parts, "TLS")
	}
	if sec.auth == nil {
		parts = append(parts, "no authentication")
	} else {
		parts = append(parts, "authentication by "+sec.auth.Describe())
	}
	if p.Server.NoReflection {
		parts = append(parts, "reflection off")
	}
	return "security: " + strings.Join(parts, ", ")
}
