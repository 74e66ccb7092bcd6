package larder

import (
	"encoding/json"
	"fmt"
	"log/slog"
)

// Role is what an authenticated caller of the server may do. Each role
// includes the ones before it: read, then write, then admin.
type Role string

// The roles. Which methods each allows is the server's to say; in short:
const (
	// RoleRead reads: the FeatureService (GetFeatures, Rank, ListViews),
	// and AdminService.ListModels without the models' file paths.
	RoleRead Role = "read"
	// RoleWrite is read, and the online writes once the API has them
	// (Push); today it allows no more than read.
	RoleWrite Role = "write"
	// RoleAdmin may call every method: model reloads, the JobService, and
	// ListModels with the models' file paths.
	RoleAdmin Role = "admin"
)

// level orders the roles; 0 is no role.
func (r Role) level() int {
	switch r {
	case RoleRead:
		return 1
	case RoleWrite:
		return 2
	case RoleAdmin:
		return 3
	}
	return 0
}

// Valid reports whether r is one of the roles.
func (r Role) Valid() bool { return r.level() > 0 }

// Includes reports whether a caller with role r may do what role need
// allows. A string that is not a role includes nothing, and is included in
// nothing.
func (r Role) Includes(need Role) bool {
	return r.Valid() && need.Valid() && r.level() >= need.level()
}

// ServerAuth says how the callers of the server prove who they are, and
// what each may do. Authentication is on when any field is set (see On):
// every call but a health check then needs a credential, a bearer token or
// a client certificate named in Certificates.
type ServerAuth struct {
	// TokensFile is a file of bearer tokens, one per line: a name, a role
	// and the token, separated by blanks. It is read when the server
	// starts; a relative path is relative to the project folder.
	TokensFile string
	// TokensEnv is the name of an environment variable holding tokens in
	// the same form, read when the server starts.
	TokensEnv string
	// Certificates give roles to client certificates, by identity. They
	// need Server.TLSClientCAFile, which makes every client present a
	// certificate its authorities signed.
	Certificates []CertificateRole
}

// CertificateRole gives a role to the client certificates that carry an
// identity: their subject's common name, or one of their DNS, URI or e-mail
// subject alternative names.
type CertificateRole struct {
	Identity string
	Role     Role
}

// On reports whether callers must authenticate.
func (a ServerAuth) On() bool {
	return a.TokensFile != "" || a.TokensEnv != "" || len(a.Certificates) > 0
}

// validateSecurity checks the TLS and authentication settings of s.
func (s *Server) validateSecurity(add addFunc) {
	switch {
	case s.TLSCertFile != "" && s.TLSKeyFile == "":
		add("server.tls_cert_file", "needs tls_key_file too: the key of the server's certificate")
	case s.TLSKeyFile != "" && s.TLSCertFile == "":
		add("server.tls_key_file", "needs tls_cert_file too: the server's certificate")
	}
	if s.TLSClientCAFile != "" && s.TLSCertFile == "" {
		add("server.tls_client_ca_file", "needs tls_cert_file and tls_key_file: clients present their certificates over TLS, which needs the server's own certificate first")
	}
	if len(s.Auth.Certificates) > 0 && s.TLSClientCAFile == "" {
		add("server.auth.certificates", "need server.tls_client_ca_file: the authorities that sign the client certificates, without which no client presents one")
	}
	first := make(map[string]int, len(s.Auth.Certificates))
	for i, c := range s.Auth.Certificates {
		path := fmt.Sprintf("server.auth.certificates[%d]", i)
		if c.Identity == "" {
			add(path+".identity", "is required: the certificate's common name, or one of its DNS, URI or e-mail names, such as ops-cli")
		} else if j, dup := first[c.Identity]; dup {
			add(path+".identity", "%q is listed twice (first at certificates[%d]): keep one", c.Identity, j)
		} else {
			first[c.Identity] = i
		}
		switch {
		case c.Role == "":
			add(path+".role", "is required: read, write or admin")
		case !c.Role.Valid():
			add(path+".role", "%q is not a role: want read, write or admin", string(c.Role))
		}
	}
}

// hiddenPassword stands for a password wherever a Redis, or a Kafka
// stream's SASL, is printed.
const hiddenPassword = "[hidden]"

// redisFields is Redis without its methods, for printing a copy of one.
type redisFields Redis

// hidden returns a copy of r whose password, if it has one, is replaced.
func (r Redis) hidden() redisFields {
	if r.Password != "" {
		r.Password = hiddenPassword
	}
	return redisFields(r)
}

// String writes r's settings as %+v would, with its password hidden, so
// that a Redis printed in an error, or a Project with %+v, gives no secret
// away.
func (r Redis) String() string { return fmt.Sprintf("%+v", r.hidden()) }

// GoString is String for %#v.
func (r Redis) GoString() string { return fmt.Sprintf("%#v", r.hidden()) }

// LogValue is r's settings with its password hidden, for log/slog's
// handlers (the JSON one included).
func (r Redis) LogValue() slog.Value { return slog.AnyValue(r.hidden()) }

// MarshalJSON encodes r's settings with its password hidden, for
// encoding/json and so for a JSON log handler given a value that holds a
// Redis (a Project), which reads no LogValue of the fields inside it.
func (r Redis) MarshalJSON() ([]byte, error) { return json.Marshal(r.hidden()) }

// kafkaSASLFields is KafkaSASL without its methods, for printing a copy of
// one.
type kafkaSASLFields KafkaSASL

// hidden returns a copy of s whose password, if it has one, is replaced.
func (s KafkaSASL) hidden() kafkaSASLFields {
	if s.Password != "" {
		s.Password = hiddenPassword
	}
	return kafkaSASLFields(s)
}

// String writes s's settings as %+v would, with its password hidden, so
// that a stream's SASL printed in an error or a log gives no secret away.
func (s KafkaSASL) String() string { return fmt.Sprintf("%+v", s.hidden()) }

// GoString is String for %#v.
func (s KafkaSASL) GoString() string { return fmt.Sprintf("%#v", s.hidden()) }

// LogValue is s's settings with its password hidden, for log/slog's
// handlers (the JSON one included).
func (s KafkaSASL) LogValue() slog.Value { return slog.AnyValue(s.hidden()) }

// MarshalJSON encodes s's settings with its password hidden, as Redis's
// does.
func (s KafkaSASL) MarshalJSON() ([]byte, error) { return json.Marshal(s.hidden()) }
