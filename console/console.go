// Package console is larder's web console: one read-only HTML page,
// rendered on the server with html/template, that shows an operator the
// views (live generation, as-of, age against max age, rows, last and next
// runs, stream lag), looks up one entity's decoded values in a view, and
// lists the rankers with their model versions.
//
// The console reads nothing itself: it asks the gRPC service's own methods
// (ListViews, GetFeatures) and renders their answers, so that the page and
// a gRPC client always agree. It is an edge like the gRPC server, and so
// speaks the API's generated types; it never writes.
//
// When the server authenticates its callers, only the admin role sees the
// console: a bearer token in the Authorization header, the same token as
// the password of HTTP basic authentication (which browsers ask for), or a
// client certificate the listener verified.
package console

import (
	"context"
	"crypto/x509"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/larder-dev/larder"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
)

// Service is what the console reads: the FeatureService's methods, which
// *server.Service implements.
type Service interface {
	ListViews(ctx context.Context, req *larderv1.ListViewsRequest) (*larderv1.ListViewsResponse, error)
	GetFeatures(ctx context.Context, req *larderv1.GetFeaturesRequest) (*larderv1.GetFeaturesResponse, error)
}

// Authenticator says who holds a bearer token or, when the token is empty,
// a verified client certificate, and with which role; *server.Auth is one.
// Its error says why the credential is refused, and never repeats it.
type Authenticator interface {
	Identify(token string, cert *x509.Certificate) (name string, role larder.Role, err error)
}

// Model is the model a ranker serves with.
type Model struct {
	Ranker   string
	Version  string
	Path     string // the model file; shown to the admin role only
	LoadedAt time.Time
}

// Config holds what a Handler needs. Service and Project are required.
type Config struct {
	Service Service
	// Project returns the project served now, which a reload replaces;
	// the console takes the project's name and its entities' key types
	// from it.
	Project func() *larder.Project
	// Models lists the model of every ranker, in project order. Nil shows
	// no rankers.
	Models func() []Model
	// Auth, when set, lets only callers with the admin role see the
	// console. Nil lets everyone see everything, model paths included, as
	// the gRPC server does without server.auth.
	Auth Authenticator
	// Now is the clock of the page's relative times; time.Now when nil.
	Now func() time.Time
	// Logger receives the refused requests; nil discards them.
	Logger *slog.Logger
	// Timeout bounds the reads of one page; DefaultTimeout when zero.
	Timeout time.Duration
}

// DefaultTimeout is how long the reads of one page may take by default.
const DefaultTimeout = 10 * time.Second

//go:embed page.html
var files embed.FS

// Handler serves the console at "/". Make it with New.
type Handler struct {
	cfg  Config
	page *template.Template
}

// New returns the console's handler, or an error when cfg lacks its
// Service or its Project.
func New(cfg Config) (*Handler, error) {
	if cfg.Service == nil || cfg.Project == nil {
		return nil, errors.New("console: a service and a project are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	page, err := template.ParseFS(files, "page.html")
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	return &Handler{cfg: cfg, page: page}, nil
}

// ServeHTTP serves the page at "/" to GET and HEAD requests of a caller
// that may see it; a lookup is the query view=VIEW&key=KEY.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	// The page shows feature values and keys: no cache keeps them, no
	// other site frames or embeds it, and no referrer carries a key away.
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'")
	hdr.Set("X-Frame-Options", "DENY")
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "no-referrer")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hdr.Set("Allow", "GET, HEAD")
		http.Error(w, "the console is read-only: GET or HEAD only", http.StatusMethodNotAllowed)
		return
	}
	if r.URL.Path != "/" {
		http.Error(w, "not found: the console is at /", http.StatusNotFound)
		return
	}
	v, ok := h.authorize(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.Timeout)
	defer cancel()
	p, code := h.build(ctx, v, r.URL.Query().Get("view"), r.URL.Query().Get("key"))
	var buf strings.Builder
	if err := h.page.Execute(&buf, p); err != nil {
		h.cfg.Logger.Error("console: rendering the page", "err", err)
		http.Error(w, "the page could not be rendered; see the server's log", http.StatusInternalServerError)
		return
	}
	hdr.Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	if r.Method == http.MethodGet {
		_, _ = w.Write([]byte(buf.String()))
	}
}

// viewer is who looks at the page.
type viewer struct {
	name  string // empty without authentication
	role  larder.Role
	authn bool // the server authenticates its callers
}

// authorize finds who makes request r and whether they may see the
// console. When they may not, it has answered r with 401 (no or a wrong
// credential, with a challenge browsers answer with a password prompt) or
// 403 (a role other than admin).
func (h *Handler) authorize(w http.ResponseWriter, r *http.Request) (viewer, bool) {
	if h.cfg.Auth == nil {
		return viewer{role: larder.RoleAdmin}, true
	}
	token, err := credential(r)
	var cert *x509.Certificate
	if err == nil && token == "" && r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
		cert = r.TLS.VerifiedChains[0][0]
	}
	var name string
	var role larder.Role
	if err == nil {
		name, role, err = h.cfg.Auth.Identify(token, cert)
	}
	if err != nil {
		h.cfg.Logger.Info("console: refused", "peer", r.RemoteAddr, "reason", err.Error())
		w.Header().Set("WWW-Authenticate", `Basic realm="larder console: an admin token as the password", charset="UTF-8"`)
		http.Error(w, "the console needs the admin role: "+err.Error()+
			"; send the admin token as the password of the browser's prompt (any user name), or as Authorization: Bearer TOKEN", http.StatusUnauthorized)
		return viewer{}, false
	}
	if !role.Includes(larder.RoleAdmin) {
		h.cfg.Logger.Info("console: refused", "peer", r.RemoteAddr, "caller", name, "role", string(role))
		http.Error(w, fmt.Sprintf("the console needs the admin role; %s has %s", name, orNone(string(role))), http.StatusForbidden)
		return viewer{}, false
	}
	return viewer{name: name, role: role, authn: true}, true
}

// credential returns the token of r's Authorization header: a bearer
// token, or the password of basic authentication. It returns "" when r
// has no such header, and an error for a header of another kind.
func credential(r *http.Request) (string, error) {
	v := r.Header.Get("Authorization")
	if v == "" {
		return "", nil
	}
	if scheme, rest, _ := strings.Cut(v, " "); strings.EqualFold(scheme, "Bearer") {
		if t := strings.TrimSpace(rest); t != "" {
			return t, nil
		}
		return "", errors.New("the authorization header holds no token")
	}
	if _, password, ok := r.BasicAuth(); ok {
		if password == "" {
			return "", errors.New("no password: give the admin token as the password")
		}
		return password, nil
	}
	return "", errors.New("the authorization header is neither a bearer token nor basic authentication")
}

func orNone(s string) string {
	if s == "" {
		return "no role"
	}
	return s
}
