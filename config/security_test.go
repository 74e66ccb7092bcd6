package config_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/config"
)

// TestParseServerSecurity reads the server's TLS, reflection and auth
// settings: set, left out, and their errors, each at its file, line and
// field.
func TestParseServerSecurity(t *testing.T) {
	t.Run("set", func(t *testing.T) {
		src := edit(t, base, 7, "  max_entities: 500", `  max_entities: 500
  tls_cert_file: tls/server.pem
  tls_key_file: tls/server-key.pem
  tls_client_ca_file: tls/clients.pem
  reflection: false
  auth:
    tokens_file: tokens
    tokens_env: LARDER_TOKENS
    certificates:
      - {identity: ops-cli, role: admin}
      - {identity: recs.shop.internal, role: read}
      - {identity: ingest, role: write}`)
		p, err := config.Parse("larder.yaml", []byte(src))
		if err != nil {
			t.Fatal(err)
		}
		s := p.Server
		want := larder.ServerAuth{TokensFile: "tokens", TokensEnv: "LARDER_TOKENS", Certificates: []larder.CertificateRole{
			{Identity: "ops-cli", Role: larder.RoleAdmin}, {Identity: "recs.shop.internal", Role: larder.RoleRead}, {Identity: "ingest", Role: larder.RoleWrite}}}
		if s.TLSCertFile != "tls/server.pem" || s.TLSKeyFile != "tls/server-key.pem" || s.TLSClientCAFile != "tls/clients.pem" ||
			!s.NoReflection || !reflect.DeepEqual(s.Auth, want) {
			t.Errorf("Server = %+v", s)
		}
	})
	t.Run("left out", func(t *testing.T) {
		p, err := config.Parse("larder.yaml", []byte(base))
		if err != nil {
			t.Fatal(err)
		}
		s := p.Server
		if s.TLSCertFile != "" || s.TLSKeyFile != "" || s.TLSClientCAFile != "" || s.NoReflection || s.Auth.On() {
			t.Errorf("Server = %+v, want no TLS, reflection on and no auth", s)
		}
	})
	for _, tc := range []struct{ line, name string }{{"  reflection: true", "true"}, {"  reflection:", "null"}} {
		t.Run("reflection "+tc.name, func(t *testing.T) {
			p, err := config.Parse("larder.yaml", []byte(edit(t, base, 7, "  max_entities: 500", tc.line)))
			if err != nil || p.Server.NoReflection {
				t.Errorf("%q: NoReflection %v, %v; want reflection on", tc.line, p.Server.NoReflection, err)
			}
		})
	}
	for _, tc := range []struct {
		name, lines string
		line, col   int
		field, msg  string
	}{
		{"certificate without key", "  tls_cert_file: server.pem", 7, 18, "server.tls_cert_file", "needs tls_key_file too"},
		{"key without certificate", "  tls_key_file: server-key.pem", 7, 17, "server.tls_key_file", "needs tls_cert_file too"},
		{"client CA without TLS", "  tls_client_ca_file: clients.pem", 7, 23, "server.tls_client_ca_file", "needs tls_cert_file and tls_key_file"},
		{"reflection not a bool", "  reflection: off", 7, 15, "server.reflection", `want true or false; got "off"`},
		{"auth empty", "  auth: {}", 7, 9, "server.auth", "names no credential, so every caller could call every method"},
		{"auth not a mapping", "  auth: tokens", 7, 9, "server.auth", "want a mapping of tokens_file, tokens_env, certificates"},
		{"auth unknown field", "  auth:\n    token_file: tokens", 8, 5, "server.auth.token_file", `unknown field "token_file"; did you mean "tokens_file"?`},
		{"tokens_file empty", "  auth:\n    tokens_file: \"\"", 8, 18, "server.auth.tokens_file", "is empty: write the path of the tokens file"},
		{"tokens_env empty", "  auth:\n    tokens_env:", 8, 16, "server.auth.tokens_env", "is empty: write the name of the environment variable"},
		{"certificates without client CA", "  tls_cert_file: s.pem\n  tls_key_file: k.pem\n  auth:\n    certificates: [{identity: ops, role: admin}]",
			10, 19, "server.auth.certificates", "need server.tls_client_ca_file"},
		{"certificates not a list", "  auth:\n    certificates: ops", 8, 19, "server.auth.certificates", "want a list of certificate identities and their roles"},
		{"unknown role", "  tls_cert_file: s.pem\n  tls_key_file: k.pem\n  tls_client_ca_file: c.pem\n  auth:\n    certificates:\n      - {identity: ops, role: root}",
			12, 31, "server.auth.certificates[0].role", `"root" is not a role: want read, write or admin`},
		{"no identity", "  tls_cert_file: s.pem\n  tls_key_file: k.pem\n  tls_client_ca_file: c.pem\n  auth:\n    certificates:\n      - {role: read}",
			12, 9, "server.auth.certificates[0].identity", "is required"},
		{"unknown certificate field", "  tls_cert_file: s.pem\n  tls_key_file: k.pem\n  tls_client_ca_file: c.pem\n  auth:\n    certificates:\n      - {identity: ops, role: read, cn: ops}",
			12, 37, "server.auth.certificates[0].cn", `unknown field "cn"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Parse("larder.yaml", []byte(edit(t, base, 7, "  max_entities: 500", tc.lines)))
			ps := problems(t, err)
			if len(ps) != 1 {
				t.Fatalf("%d problems, want 1: %v", len(ps), err)
			}
			p := ps[0]
			if p.Line != tc.line || p.Column != tc.col || p.Field != tc.field || !strings.Contains(p.Msg, tc.msg) {
				t.Errorf("problem = %d:%d %s: %s\nwant %d:%d %s: ...%s...", p.Line, p.Column, p.Field, p.Msg, tc.line, tc.col, tc.field, tc.msg)
			}
		})
	}
}

// TestParseSecretInEnvField reports a secret written where the name of its
// environment variable belongs (redis.password_env, server.auth.tokens_env)
// at its line, without printing it: the problems of the file go to
// terminals, CI logs and journals.
func TestParseSecretInEnvField(t *testing.T) {
	const secret = "Tr0ub4dor&3 x"
	for _, tc := range []struct {
		name, old, lines string
		line, col        int
		field            string
	}{
		{"redis.password_env", "  grace_period: 10m", "  password_env: \"" + secret + "\"", 4, 17, "redis.password_env"},
		{"server.auth.tokens_env", "  max_entities: 500", "  auth:\n    tokens_env: \"" + secret + "\"", 8, 17, "server.auth.tokens_env"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := 4
			if tc.field != "redis.password_env" {
				n = 7
			}
			_, err := config.Loader{LookupEnv: env(nil)}.Parse("larder.yaml", []byte(edit(t, base, n, tc.old, tc.lines)))
			ps := problems(t, err)
			if len(ps) != 1 {
				t.Fatalf("%d problems, want 1: %v", len(ps), err)
			}
			p := ps[0]
			if p.Line != tc.line || p.Column != tc.col || p.Field != tc.field || !strings.Contains(p.Msg, "is not the name of an environment variable") {
				t.Errorf("problem = %d:%d %s: %s\nwant %d:%d %s: ...is not the name of an environment variable...", p.Line, p.Column, p.Field, p.Msg, tc.line, tc.col, tc.field)
			}
			if strings.Contains(err.Error(), "Tr0ub4dor") {
				t.Errorf("the problem prints the secret: %v", err)
			}
		})
	}
}
