package larder_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/larder-dev/larder"
)

func TestRoleIncludes(t *testing.T) {
	for _, tc := range []struct {
		have, need larder.Role
		want       bool
	}{
		{larder.RoleRead, larder.RoleRead, true},
		{larder.RoleRead, larder.RoleWrite, false},
		{larder.RoleRead, larder.RoleAdmin, false},
		{larder.RoleWrite, larder.RoleRead, true},
		{larder.RoleWrite, larder.RoleAdmin, false},
		{larder.RoleAdmin, larder.RoleRead, true},
		{larder.RoleAdmin, larder.RoleWrite, true},
		{larder.RoleAdmin, larder.RoleAdmin, true},
		{"", larder.RoleRead, false},
		{"root", larder.RoleRead, false},
		{larder.RoleAdmin, "", false},
		{larder.RoleAdmin, "root", false},
	} {
		if got := tc.have.Includes(tc.need); got != tc.want {
			t.Errorf("Role(%q).Includes(%q) = %v, want %v", tc.have, tc.need, got, tc.want)
		}
	}
}

func TestServerAuthOn(t *testing.T) {
	for _, tc := range []struct {
		auth larder.ServerAuth
		want bool
	}{
		{larder.ServerAuth{}, false},
		{larder.ServerAuth{TokensFile: "tokens"}, true},
		{larder.ServerAuth{TokensEnv: "LARDER_TOKENS"}, true},
		{larder.ServerAuth{Certificates: []larder.CertificateRole{{Identity: "ops", Role: larder.RoleAdmin}}}, true},
	} {
		if got := tc.auth.On(); got != tc.want {
			t.Errorf("%+v.On() = %v, want %v", tc.auth, got, tc.want)
		}
	}
}

func TestValidateSecurity(t *testing.T) {
	certs := func(cs ...larder.CertificateRole) func(*larder.Project) {
		return func(p *larder.Project) {
			p.Server.TLSCertFile, p.Server.TLSKeyFile, p.Server.TLSClientCAFile = "server.pem", "server-key.pem", "clients.pem"
			p.Server.Auth.Certificates = cs
		}
	}
	for _, tc := range []struct {
		name  string
		edit  func(*larder.Project)
		paths []string
		msg   string
	}{
		{"tls", func(p *larder.Project) { p.Server.TLSCertFile, p.Server.TLSKeyFile = "server.pem", "server-key.pem" }, nil, ""},
		{"mutual tls and tokens", func(p *larder.Project) {
			certs(larder.CertificateRole{Identity: "ops", Role: larder.RoleAdmin}, larder.CertificateRole{Identity: "spiffe://shop/recs", Role: larder.RoleRead})(p)
			p.Server.Auth.TokensFile, p.Server.Auth.TokensEnv = "tokens", "LARDER_TOKENS"
		}, nil, ""},
		{"certificate without key", func(p *larder.Project) { p.Server.TLSCertFile = "server.pem" }, []string{"server.tls_cert_file"}, "needs tls_key_file too"},
		{"key without certificate", func(p *larder.Project) { p.Server.TLSKeyFile = "server-key.pem" }, []string{"server.tls_key_file"}, "needs tls_cert_file too"},
		{"client CA without TLS", func(p *larder.Project) { p.Server.TLSClientCAFile = "clients.pem" }, []string{"server.tls_client_ca_file"}, "needs tls_cert_file and tls_key_file"},
		{"certificates without client CA", func(p *larder.Project) {
			certs(larder.CertificateRole{Identity: "ops", Role: larder.RoleAdmin})(p)
			p.Server.TLSClientCAFile = ""
		}, []string{"server.auth.certificates"}, "need server.tls_client_ca_file"},
		{"empty identity", certs(larder.CertificateRole{Role: larder.RoleRead}), []string{"server.auth.certificates[0].identity"}, "is required"},
		{"identity twice", certs(larder.CertificateRole{Identity: "ops", Role: larder.RoleRead}, larder.CertificateRole{Identity: "ops", Role: larder.RoleAdmin}),
			[]string{"server.auth.certificates[1].identity"}, `"ops" is listed twice (first at certificates[0])`},
		{"no role", certs(larder.CertificateRole{Identity: "ops"}), []string{"server.auth.certificates[0].role"}, "is required: read, write or admin"},
		{"unknown role", certs(larder.CertificateRole{Identity: "ops", Role: "root"}), []string{"server.auth.certificates[0].role"}, `"root" is not a role`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := validProject()
			tc.edit(p)
			err := p.Validate()
			if tc.paths == nil {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			var ve *larder.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Validate() = %v, want a *ValidationError", err)
			}
			var paths []string
			for _, fe := range ve.Errs {
				paths = append(paths, fe.Path)
			}
			if strings.Join(paths, " ") != strings.Join(tc.paths, " ") {
				t.Errorf("paths = %q, want %q (%v)", paths, tc.paths, err)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not mention %q", err, tc.msg)
			}
		})
	}
}

// TestRedisPrintedWithoutPassword prints a Redis, and a Project that holds
// one, every way an error or a log line might: the password never shows.
func TestRedisPrintedWithoutPassword(t *testing.T) {
	const password = "s3cret-redis-pass"
	r := larder.Redis{Addrs: []string{"10.0.0.1:6379"}, Username: "larder", Password: password, TLS: true}
	p := &larder.Project{Name: "shop", Redis: r}
	var logs strings.Builder
	text := slog.New(slog.NewTextHandler(&logs, nil))
	json := slog.New(slog.NewJSONHandler(&logs, nil))
	text.Info("connect", "redis", r, "project", p)
	json.Info("connect", "redis", r)
	printed := []string{fmt.Sprint(r), fmt.Sprintf("%v %+v %#v %s", r, r, r, r), fmt.Sprintf("%v %+v", p, *p), fmt.Errorf("redis %v: down", r).Error(), logs.String()}
	for _, s := range printed {
		if strings.Contains(s, password) {
			t.Errorf("the password shows in %s", s)
		}
	}
	if s := fmt.Sprint(r); !strings.Contains(s, "10.0.0.1:6379") || !strings.Contains(s, "Password:[hidden]") {
		t.Errorf("Redis printed as %s, want its address and a hidden password", s)
	}
	if s := fmt.Sprint(larder.Redis{Addrs: []string{"a:1"}}); strings.Contains(s, "[hidden]") {
		t.Errorf("a Redis without a password printed as %s", s)
	}
	if !strings.Contains(logs.String(), `"Password":"[hidden]"`) {
		t.Errorf("the JSON log line does not show the password as hidden:\n%s", logs.String())
	}
}

// TestKafkaSASLPrintedWithoutPassword prints a stream's SASL settings
// every way an error or a log line might: the password never shows.
func TestKafkaSASLPrintedWithoutPassword(t *testing.T) {
	const password = "s3cret-kafka-pass"
	a := larder.KafkaSASL{Mechanism: larder.SASLScramSHA512, Username: "larder", Password: password, PasswordEnv: "LARDER_KAFKA_PASSWORD"}
	var logs strings.Builder
	slog.New(slog.NewTextHandler(&logs, nil)).Info("connect", "sasl", a, "ptr", &a)
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("connect", "sasl", a)
	printed := []string{fmt.Sprint(a), fmt.Sprintf("%v %+v %#v %s %+v", a, a, a, a, &a), fmt.Errorf("sasl %v: refused", a).Error(), logs.String()}
	for _, s := range printed {
		if strings.Contains(s, password) {
			t.Errorf("the password shows in %s", s)
		}
	}
	if s := fmt.Sprint(a); !strings.Contains(s, "Username:larder") || !strings.Contains(s, "Password:[hidden]") {
		t.Errorf("KafkaSASL printed as %s, want its user and a hidden password", s)
	}
	if !strings.Contains(logs.String(), `"Password":"[hidden]"`) {
		t.Errorf("the JSON log line does not show the password as hidden:\n%s", logs.String())
	}
}

// TestSecretsMarshaledWithoutPassword encodes as JSON, as a JSON log
// handler does a value it is given whole, a Project holding a Redis and a
// stream with Kafka SASL settings: neither password shows.
func TestSecretsMarshaledWithoutPassword(t *testing.T) {
	const redisPassword, kafkaPassword = "s3cret-redis-pass", "s3cret-kafka-pass"
	p := &larder.Project{Name: "shop", Redis: larder.Redis{Addrs: []string{"10.0.0.1:6379"}, Password: redisPassword},
		Streams: []*larder.Stream{{Name: "orders", Kafka: &larder.KafkaTopic{Brokers: []string{"k:9092"}, Topic: "orders",
			SASL: &larder.KafkaSASL{Mechanism: larder.SASLPlain, Username: "larder", Password: kafkaPassword}}}}}
	var logs strings.Builder
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("loaded", "project", p, "stream", p.Streams[0])
	data, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{string(data), logs.String()} {
		if strings.Contains(s, redisPassword) || strings.Contains(s, kafkaPassword) {
			t.Errorf("a password shows in %s", s)
		}
		if !strings.Contains(s, `"Password":"[hidden]"`) {
			t.Errorf("no hidden password in %s", s)
		}
	}
}
