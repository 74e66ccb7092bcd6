package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/larder-dev/larder"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
)

// Token is a bearer token, and the name and role of whoever holds it.
type Token struct {
	// Name says who holds the token, in audit lines and errors; it is not
	// secret.
	Name string
	Role larder.Role
	// Secret is the token itself. It is never logged, nor repeated in an
	// error.
	Secret string
}

// String names the token's holder and role, never its secret, so that a
// Token printed by mistake gives nothing away.
func (t Token) String() string { return t.Name + " (" + string(t.Role) + ")" }

// GoString is String, for %#v.
func (t Token) GoString() string { return t.String() }

// Limits of a token and of its holder's name.
const (
	// MinTokenLength is the shortest token accepted: 16 characters of
	// base64 are 96 random bits. `openssl rand -base64 32` gives 44.
	MinTokenLength = 16
	maxTokenLength = 1024
	maxTokenName   = 128
)

// ParseTokens reads tokens written one per entry: the holder's name, a role
// (read, write or admin) and the token, separated by blanks. Entries are
// lines; with commas, a line may hold several entries (for an environment
// variable). Blank lines and lines starting with # are skipped. A name is
// letters, digits and "_-.@"; a token is at least MinTokenLength of
// letters, digits and "-._~+/=" (base64, base64url and hex all fit).
//
// source names where the text comes from, such as
// "server.auth.tokens_file /etc/larder/tokens", and starts every error. An
// error names the line (and entry) at fault, never what is written there,
// since a misplaced field may be a token.
func ParseTokens(text, source string) ([]Token, error) {
	var tokens []Token
	var errs []error
	for i, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		entries := strings.Split(line, ",")
		for j, entry := range entries {
			entry = strings.TrimSpace(entry)
			if entry == "" {
				continue
			}
			where := "line " + strconv.Itoa(i+1)
			if len(entries) > 1 {
				where += ", entry " + strconv.Itoa(j+1)
			}
			t, err := parseToken(entry)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %s: %w", source, where, err))
				continue
			}
			tokens = append(tokens, t)
		}
	}
	return tokens, errors.Join(errs...)
}

// parseToken parses one "name role token" entry. Its errors say which
// field is wrong, and never quote one.
func parseToken(entry string) (Token, error) {
	f := strings.Fields(entry)
	if len(f) != 3 {
		return Token{}, fmt.Errorf("want three fields, name role token; got %d", len(f))
	}
	t := Token{Name: f[0], Role: larder.Role(f[1]), Secret: f[2]}
	switch {
	case !validTokenName(t.Name):
		return Token{}, fmt.Errorf("the name (first field) is not 1 to %d letters, digits and _-.@, or the fields are not in the order name role token", maxTokenName)
	case !t.Role.Valid():
		return Token{}, errors.New("the role (second field) is not read, write or admin, or the fields are not in the order name role token")
	case len(t.Secret) < MinTokenLength:
		return Token{}, fmt.Errorf("the token (third field) is %d characters long; use at least %d random ones, such as the output of `openssl rand -base64 32`", len(t.Secret), MinTokenLength)
	case len(t.Secret) > maxTokenLength:
		return Token{}, fmt.Errorf("the token (third field) is longer than %d characters", maxTokenLength)
	case !validTokenChars(t.Secret):
		return Token{}, errors.New("the token (third field) holds a character other than letters, digits and -._~+/=")
	}
	return t, nil
}

func validTokenName(s string) bool {
	if s == "" || len(s) > maxTokenName {
		return false
	}
	for _, c := range []byte(s) {
		if !isAlnum(c) && !strings.ContainsRune("_-.@", rune(c)) {
			return false
		}
	}
	return true
}

func validTokenChars(s string) bool {
	for _, c := range []byte(s) {
		if !isAlnum(c) && !strings.ContainsRune("-._~+/=", rune(c)) {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// ReadTokens reads the tokens of a: those of the file a.TokensFile (a path
// resolved already) and those of the environment variable a.TokensEnv,
// looked up with lookupEnv (os.LookupEnv when nil). It returns an error
// naming the setting when the file cannot be read, the variable is not
// set, or an entry is malformed (see ParseTokens).
func ReadTokens(a larder.ServerAuth, lookupEnv func(string) (string, bool)) ([]Token, error) {
	if lookupEnv == nil {
		lookupEnv = os.LookupEnv
	}
	var tokens []Token
	if a.TokensFile != "" {
		b, err := os.ReadFile(a.TokensFile)
		if err != nil {
			return nil, fmt.Errorf("server.auth.tokens_file: %w", err)
		}
		ts, err := ParseTokens(string(b), "server.auth.tokens_file "+a.TokensFile)
		if err != nil {
			return nil, err
		}
		tokens = append(tokens, ts...)
	}
	if a.TokensEnv != "" {
		v, ok := lookupEnv(a.TokensEnv)
		if !ok {
			return nil, fmt.Errorf("server.auth.tokens_env: environment variable %s is not set: set it in larder serve's environment, or remove tokens_env", a.TokensEnv)
		}
		ts, err := ParseTokens(v, "server.auth.tokens_env "+a.TokensEnv)
		if err != nil {
			return nil, err
		}
		tokens = append(tokens, ts...)
	}
	return tokens, nil
}

// Auth authenticates the callers of a server, by bearer token or client
// certificate, and says which methods each may call. Make it with NewAuth
// and pass it in Config.Auth. A nil *Auth authenticates no one and lets
// everyone call everything.
type Auth struct {
	tokens []tokenEntry
	// certs holds the role of each certificate identity.
	certs map[string]larder.Role
}

// tokenEntry is a token as Auth keeps it: its digest, so that comparing
// two takes the same time whatever their lengths.
type tokenEntry struct {
	name   string
	role   larder.Role
	digest [sha256.Size]byte
}

// NewAuth returns an Auth that accepts tokens and the client certificates
// that certs name. A name may hold several tokens (while one replaces
// another); the same token given twice, or no credential at all, is an
// error. It names the holders at fault, never a token.
func NewAuth(tokens []Token, certs []larder.CertificateRole) (*Auth, error) {
	if len(tokens) == 0 && len(certs) == 0 {
		return nil, errors.New("server.auth: no token and no certificate identity, so no caller could call anything: add tokens to tokens_file or tokens_env, or identities to certificates")
	}
	a := &Auth{certs: make(map[string]larder.Role, len(certs))}
	seen := make(map[[sha256.Size]byte]string, len(tokens))
	for _, t := range tokens {
		if !t.Role.Valid() {
			return nil, fmt.Errorf("server.auth: the token of %s has no valid role: want read, write or admin", t.Name)
		}
		d := sha256.Sum256([]byte(t.Secret))
		if other, dup := seen[d]; dup {
			return nil, fmt.Errorf("server.auth: %s and %s have the same token: give each its own", other, t.Name)
		}
		seen[d] = t.Name
		a.tokens = append(a.tokens, tokenEntry{name: t.Name, role: t.Role, digest: d})
	}
	for _, c := range certs {
		if !c.Role.Valid() {
			return nil, fmt.Errorf("server.auth.certificates: %q has no valid role: want read, write or admin", c.Identity)
		}
		a.certs[c.Identity] = c.Role
	}
	return a, nil
}

// Describe says how many credentials a accepts, such as "3 tokens and 1
// certificate identity", and nothing of what they are.
func (a *Auth) Describe() string {
	var parts []string
	if n := len(a.tokens); n > 0 {
		parts = append(parts, plural(n, "token"))
	}
	if n := len(a.certs); n > 0 {
		parts = append(parts, plural(n, "certificate identity"))
	}
	return strings.Join(parts, " and ")
}

func plural(n int, what string) string {
	switch {
	case n == 1:
		return "1 " + what
	case strings.HasSuffix(what, "y"):
		return strconv.Itoa(n) + " " + strings.TrimSuffix(what, "y") + "ies"
	}
	return strconv.Itoa(n) + " " + what + "s"
}

// caller is who made a request, as far as the server knows.
type caller struct {
	// name is the token's holder or the certificate's identity;
	// "anonymous" for a request with neither.
	name string
	// via is how the caller was identified: "token", "certificate" or
	// "none".
	via string
	// role is what the caller may do; "" for none.
	role larder.Role
}

var anonymous = caller{name: "anonymous", via: "none"}

type callerKey struct{}

// callerFrom returns the caller that Auth found for the request of ctx;
// ok is false when the server authenticates no one.
func callerFrom(ctx context.Context) (c caller, ok bool) {
	c, ok = ctx.Value(callerKey{}).(caller)
	return c, ok
}

// Health checks are open to all, so that load balancers need no
// credential; reflection lists the services, and needs some role.
const (
	healthMethods     = "/grpc.health.v1.Health/"
	reflectionMethods = "/grpc.reflection."
	// ingestMethods are the online writes (Push), which need the write
	// role.
	ingestMethods = "/larder.v1.IngestService/"
)

// methodRole returns the role a method needs, or open for a method that
// needs none. A method not named here needs admin: what the server adds
// later is closed until it is given a role.
func methodRole(method string) (need larder.Role, open bool) {
	switch {
	case strings.HasPrefix(method, featureMethods):
		return larder.RoleRead, false
	case strings.HasPrefix(method, healthMethods):
		return "", true
	case method == larderv1.AdminService_ListModels_FullMethodName:
		// Paths are left out for callers without admin; see ListModels.
		return larder.RoleRead, false
	case strings.HasPrefix(method, ingestMethods):
		return larder.RoleWrite, false
	case strings.HasPrefix(method, reflectionMethods):
		return larder.RoleRead, false
	}
	return larder.RoleAdmin, false
}

// authorize authenticates the caller of ctx and checks that it may call
// method. The error is UNAUTHENTICATED for a missing or unknown credential
// and PERMISSION_DENIED for a role that does not allow the method; the
// caller is returned in either case, as far as it is known, for the audit
// line.
func (a *Auth) authorize(ctx context.Context, method string) (caller, error) {
	need, open := methodRole(method)
	if open {
		return anonymous, nil
	}
	c, err := a.authenticate(ctx)
	if err != nil {
		return c, err
	}
	if !c.role.Includes(need) {
		if c.role == "" {
			return c, status.Errorf(codes.PermissionDenied, "the client certificate of %q has no role in server.auth.certificates", c.name)
		}
		return c, status.Errorf(codes.PermissionDenied, "%s needs the %s role; %s %s has %s", method, need, c.via, c.name, c.role)
	}
	return c, nil
}

// errNoCredential is the answer to a request without a credential.
var errNoCredential = status.Error(codes.Unauthenticated,
	"no credential: send a bearer token in the authorization metadata (authorization: Bearer TOKEN), or connect with a client certificate that server.auth.certificates names")

// authenticate finds who the caller of ctx is: the holder of its bearer
// token when it sends one, else the identity of its client certificate.
// A token that is sent is checked, whatever certificate comes with it.
func (a *Auth) authenticate(ctx context.Context) (caller, error) {
	if vals := metadata.ValueFromIncomingContext(ctx, "authorization"); len(vals) > 0 {
		c := caller{name: "unknown", via: "token"}
		if len(vals) > 1 {
			return c, status.Error(codes.Unauthenticated, "more than one authorization value: send one bearer token")
		}
		secret, ok := bearer(vals[0])
		if !ok {
			return c, status.Error(codes.Unauthenticated, "the authorization metadata is not a bearer token: send authorization: Bearer TOKEN")
		}
		if t := a.match(secret); t != nil {
			return caller{name: t.name, via: "token", role: t.role}, nil
		}
		return c, status.Error(codes.Unauthenticated, "invalid bearer token")
	}
	if cert := clientCert(ctx); cert != nil {
		for _, id := range identities(cert) {
			if role, ok := a.certs[id]; ok {
				return caller{name: id, via: "certificate", role: role}, nil
			}
		}
		c := caller{name: certName(cert), via: "certificate"}
		if len(a.certs) == 0 {
			// Certificates give no roles here, only the transport: the
			// caller has yet to present a credential.
			return c, errNoCredential
		}
		// A certificate the server trusts, but whose identity has no role.
		return c, nil
	}
	return anonymous, errNoCredential
}

// Identify returns the holder and the role of a bearer token, or, when
// token is empty, of cert: a client certificate the caller's listener
// verified (nil for none). It serves listeners other than gRPC, such as
// the web console, by the same rules as authenticate. It returns an error
// when there is no credential, when the token is unknown, or when no
// identity of cert has a role; the error never repeats the token.
func (a *Auth) Identify(token string, cert *x509.Certificate) (name string, role larder.Role, err error) {
	if token != "" {
		if t := a.match(token); t != nil {
			return t.name, t.role, nil
		}
		return "", "", errors.New("invalid bearer token")
	}
	if cert != nil {
		for _, id := range identities(cert) {
			if role, ok := a.certs[id]; ok {
				return id, role, nil
			}
		}
		return certName(cert), "", fmt.Errorf("the client certificate of %q has no role in server.auth.certificates", certName(cert))
	}
	return "", "", errors.New("no credential: send a bearer token (authorization: Bearer TOKEN), or a client certificate that server.auth.certificates names")
}

// bearer returns the token of an authorization value "Bearer TOKEN"; the
// scheme's case does not matter.
func bearer(v string) (string, bool) {
	const scheme = "bearer "
	if len(v) <= len(scheme) || !strings.EqualFold(v[:len(scheme)], scheme) {
		return "", false
	}
	return strings.TrimSpace(v[len(scheme):]), true
}

// match returns the entry of secret, or nil. It compares digests, and
// compares every one, so that its time says nothing of the tokens it
// knows.
func (a *Auth) match(secret string) *tokenEntry {
	d := sha256.Sum256([]byte(secret))
	var found *tokenEntry
	for i := range a.tokens {
		if subtle.ConstantTimeCompare(d[:], a.tokens[i].digest[:]) == 1 {
			found = &a.tokens[i]
		}
	}
	return found
}

// clientCert returns the client certificate of the connection of ctx, when
// the server verified it against its client authorities; nil otherwise.
func clientCert(ctx context.Context) *x509.Certificate {
	if cert, ok := ctx.Value(gatewayCertKey{}).(*x509.Certificate); ok {
		// A request of the HTTP gateway, over the TLS of its listener.
		return cert
	}
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return nil
	}
	return info.State.VerifiedChains[0][0]
}

// identities returns the names a certificate may be given a role by, in
// the order they are looked up: the subject's common name, then the DNS,
// URI and e-mail subject alternative names.
func identities(cert *x509.Certificate) []string {
	ids := make([]string, 0, 1+len(cert.DNSNames)+len(cert.URIs)+len(cert.EmailAddresses))
	if cert.Subject.CommonName != "" {
		ids = append(ids, cert.Subject.CommonName)
	}
	ids = append(ids, cert.DNSNames...)
	for _, u := range cert.URIs {
		ids = append(ids, u.String())
	}
	return append(ids, cert.EmailAddresses...)
}

// certName names a certificate in audit lines and errors: its first
// identity, or its serial number when it has none.
func certName(cert *x509.Certificate) string {
	if ids := identities(cert); len(ids) > 0 {
		return ids[0]
	}
	return "serial " + cert.SerialNumber.String()
}

// peerCaller is who the caller of ctx is when the server authenticates no
// one: the identity of its client certificate, when it sent one the server
// verified, else anonymous. Any caller may call anything then.
func peerCaller(ctx context.Context) caller {
	if cert := clientCert(ctx); cert != nil {
		return caller{name: certName(cert), via: "certificate"}
	}
	return anonymous
}

// peerAddr returns the address of the caller of ctx, or "".
func peerAddr(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return ""
}
