package config

import (
	"cmp"
	"fmt"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml/ast"

	"github.com/larder-dev/larder"
)

// serverFields and redisFields are the fields of server and of redis.
var (
	serverFields = []string{"listen", "max_entities", "max_candidates", "max_features", "max_request_cells", "max_response_bytes",
		"max_concurrent_requests", "default_deadline", "max_deadline", "refresh_interval", "metrics_listen", "admin_listen",
		"http_listen", "tls_cert_file", "tls_key_file", "tls_client_ca_file", "reflection", "auth"}
	redisFields = []string{"addresses", "master_name", "username", "password", "password_env", "tls",
		"tls_ca_file", "tls_cert_file", "tls_key_file", "tls_server_name", "db", "grace_period", "allow_eviction", "push_retention"}
)

// settingsSchema is the schema of the settings mapping name, whose fields
// are known: a field of the mapping other is said to belong there.
func settingsSchema(known []string, name string, other []string, otherName string) schema {
	return schema{known: known, misplaced: func(key string) string {
		if !slices.Contains(other, key) {
			return ""
		}
		return fmt.Sprintf("%s is a field of %s, not %s: move it to %s.%s", key, otherName, name, otherName, key)
	}}
}

// server decodes the server settings into s. Its limits take their defaults
// when left out: the decoder leaves them zero and Project.SetDefaults fills
// them. A zero written out would read as left out, so it is a problem here;
// Project.Validate checks the rest of their rules.
func (d *decoder) server(n node, s *larder.Server) {
	var admin, httpNode node
	for _, f := range d.fieldsOf(n, settingsSchema(serverFields, "server", redisFields, "redis")) {
		switch f.key {
		case "listen":
			s.Listen = d.str(f)
		case "max_entities":
			s.MaxEntities = d.integer(f)
		case "max_candidates":
			s.MaxCandidates = d.integer(f)
		case "max_features":
			s.MaxFeatures = d.limit(f, strconv.Itoa(larder.DefaultMaxFeatures))
		case "max_request_cells":
			s.MaxRequestCells = d.limit(f, strconv.Itoa(larder.DefaultMaxRequestCells))
		case "max_response_bytes":
			s.MaxResponseBytes = d.byteSize(f)
		case "max_concurrent_requests":
			s.MaxConcurrentRequests = d.limit(f, strconv.Itoa(larder.DefaultMaxConcurrentRequests))
		case "default_deadline":
			s.DefaultDeadline = d.setting(f, larder.DefaultDeadline)
		case "max_deadline":
			s.MaxDeadline = d.setting(f, larder.DefaultMaxDeadline)
		case "refresh_interval":
			s.RefreshInterval = d.duration(f)
			if s.RefreshInterval < 0 {
				d.problem(f, "must be positive: the interval between re-reads of the live generations, such as 10s")
			}
		case "metrics_listen":
			s.MetricsListen = d.str(f)
		case "admin_listen":
			s.AdminListen = d.str(f)
			admin = f
		case "http_listen":
			s.HTTPListen = d.str(f)
			httpNode = f
			if _, _, err := net.SplitHostPort(s.HTTPListen); err != nil && !d.isBad(f.path) {
				d.problem(f, "want host:port, such as 127.0.0.1:8080; got %q", s.HTTPListen)
			}
		case "tls_cert_file":
			s.TLSCertFile = d.str(f)
		case "tls_key_file":
			s.TLSKeyFile = d.str(f)
		case "tls_client_ca_file":
			s.TLSClientCAFile = d.str(f)
		case "reflection":
			// Left out or null, reflection keeps its default: on.
			s.NoReflection = !isNull(f.val) && !d.boolean(f)
		case "auth":
			d.auth(f, &s.Auth)
		}
	}
	listen := cmp.Or(s.Listen, larder.DefaultListen)
	if s.AdminListen != "" && s.AdminListen == listen && !anyPort(listen) {
		d.problem(admin, "is the same address as server.listen (%s): give the AdminService a port of its own, such as 127.0.0.1:50052, or remove admin_listen to serve it on server.listen", listen)
	}
	for _, other := range []struct{ name, addr string }{{"listen", listen}, {"admin_listen", s.AdminListen}, {"metrics_listen", s.MetricsListen}} {
		if s.HTTPListen != "" && s.HTTPListen == other.addr && !anyPort(other.addr) && !d.isBad(httpNode.path) {
			d.problem(httpNode, "is the same address as server.%s (%s): give the HTTP/JSON gateway a port of its own, such as 127.0.0.1:8080", other.name, other.addr)
		}
	}
}

// auth decodes server.auth: where the bearer tokens are, and the roles of
// client certificates. The token files are read by the server when it
// starts, not here: only it needs them, and they may be readable by it
// alone.
func (d *decoder) auth(n node, a *larder.ServerAuth) {
	before := len(d.problems)
	for _, f := range d.fields(n, "tokens_file", "tokens_env", "certificates") {
		switch f.key {
		case "tokens_file":
			a.TokensFile = d.str(f)
			if a.TokensFile == "" && !d.isBad(f.path) {
				d.problem(f, "is empty: write the path of the tokens file, or remove tokens_file")
			}
		case "tokens_env":
			a.TokensEnv = d.str(f)
			switch {
			case d.isBad(f.path):
			case a.TokensEnv == "":
				d.problem(f, "is empty: write the name of the environment variable that holds the tokens, such as LARDER_TOKENS, or remove tokens_env")
			case !envName(a.TokensEnv):
				d.notEnvName(f, "tokens")
			}
		case "certificates":
			for _, it := range d.list(f, "certificate identities and their roles, such as {identity: ops-cli, role: admin}") {
				var c larder.CertificateRole
				for _, cf := range d.fields(it, "identity", "role") {
					switch cf.key {
					case "identity":
						c.Identity = d.str(cf)
					case "role":
						c.Role = larder.Role(d.str(cf))
					}
				}
				a.Certificates = append(a.Certificates, c)
			}
		}
	}
	// An auth block that names no credential would leave the server open
	// while its file reads as if it were not.
	if !a.On() && len(d.problems) == before {
		d.problem(n, "names no credential, so every caller could call every method: set tokens_file, tokens_env or certificates, or remove auth")
	}
}

// anyPort reports whether addr asks for any free port (port 0), which two
// listeners may both ask for.
func anyPort(addr string) bool {
	_, port, err := net.SplitHostPort(addr)
	return err == nil && port == "0"
}

// limit decodes a whole number that takes the default def when left out,
// and reports a zero written out.
func (d *decoder) limit(n node, def string) int {
	v := d.integer(n)
	if v == 0 && !isNull(n.val) && !d.isBad(n.path) {
		d.problem(n, "must be positive, got 0; leave %s out for the default, %s", n.key, def)
	}
	return v
}

// byteSize decodes a size in bytes, written as a whole number of bytes or
// with a unit (see parseByteSize), which takes its default when left out.
func (d *decoder) byteSize(n node) int {
	switch v := n.val.(type) {
	case nil, *ast.NullNode:
		return 0
	case *ast.IntegerNode:
		return d.limit(n, byteSizeText(larder.DefaultMaxResponseBytes))
	case *ast.StringNode:
		size, err := parseByteSize(v.Value)
		if err != nil {
			d.problem(n, "%v", err)
			return 0
		}
		if size == 0 {
			d.problem(n, "must be positive, got %s; leave %s out for the default, %s", v.Value, n.key, byteSizeText(larder.DefaultMaxResponseBytes))
		}
		return size
	}
	d.problem(n, "want a size such as 64MiB or 1000000; got %s", describe(n.val))
	return 0
}

// byteUnits are the units of a size, longest first so that "MiB" is not
// read as "B".
var byteUnits = []struct {
	name string
	size int
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9},
	{"B", 1},
}

// parseByteSize parses a size such as 64MiB, 500KB or 1048576B: a whole
// number and a unit (B; KB, MB, GB in powers of 1000; KiB, MiB, GiB in
// powers of 1024), or a whole number of bytes alone. It returns an error
// that says how to write a size.
func parseByteSize(s string) (int, error) {
	bad := func(why string) error {
		return fmt.Errorf("invalid size %q: %swrite a whole number and a unit (B, KB, MB, GB, KiB, MiB or GiB), such as 64MiB", s, why)
	}
	num, unit := s, 1
	for _, u := range byteUnits {
		if rest, ok := strings.CutSuffix(s, u.name); ok {
			num, unit = strings.TrimSpace(rest), u.size
			break
		}
	}
	if !digits(num) {
		return 0, bad("")
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n > math.MaxInt/int64(unit) {
		return 0, bad("too large; ")
	}
	return int(n) * unit, nil
}

// byteSizeText writes a size with the largest binary unit that divides it.
func byteSizeText(n int) string {
	for _, u := range []struct {
		name string
		size int
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n != 0 && n%u.size == 0 {
			return strconv.Itoa(n/u.size) + u.name
		}
	}
	return strconv.Itoa(n) + "B"
}
