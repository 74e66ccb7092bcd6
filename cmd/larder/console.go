package main

import (
	"fmt"
	"net"

	"github.com/larder-dev/larder/console"
)

// startConsole serves the web console of r's service on r.opts.console,
// when it is set, until r is closed, and prints its address. It listens
// with the TLS of r's other listeners, and lets in only the admin role
// when the server authenticates its callers; it warns when the console is
// reachable beyond this machine with no authentication, or with tokens in
// clear text.
func (a *app) startConsole(r *running) error {
	addr := r.opts.console
	if addr == "" {
		return nil
	}
	sec := r.opts.security
	if sec == nil {
		sec = &serverSecurity{}
	}
	cfg := console.Config{
		Service: r.svc,
		Project: r.project.Load,
		Models: func() []console.Model {
			infos := r.svc.ListModels()
			ms := make([]console.Model, len(infos))
			for i, m := range infos {
				ms[i] = console.Model{Ranker: m.Ranker, Version: m.Version, Path: m.Path, LoadedAt: m.LoadedAt}
			}
			return ms
		},
		Now:    a.now,
		Logger: a.logger,
	}
	if sec.auth != nil {
		cfg.Auth = sec.auth // not a nil *server.Auth in a non-nil interface
	}
	h, err := console.New(cfg)
	if err != nil {
		return err
	}
	lis := r.opts.listeners.console
	if lis == nil {
		if lis, err = net.Listen("tcp", addr); err != nil {
			return fmt.Errorf("console: listen on %s: %w (pass another --console address)", addr, err)
		}
	}
	lis, scheme := a.serveHTTPOn(r, lis, h, "the console", nil)
	if tcp, ok := lis.Addr().(*net.TCPAddr); ok && !tcp.IP.IsLoopback() {
		switch {
		case sec.auth == nil:
			fmt.Fprintf(a.stderr, "warning: the console on %s is reachable beyond this machine with no authentication: anyone who reaches it sees every view, looks up any key and sees the model files; give --console a loopback address such as 127.0.0.1:9465, or set server.auth (see docs/operations.md, Web console)\n", lis.Addr())
		case sec.tokens && sec.tls == nil:
			fmt.Fprintf(a.stderr, "warning: the console on %s is reachable beyond this machine without TLS: the admin token crosses the network in clear text; set server.tls_cert_file and server.tls_key_file\n", lis.Addr())
		}
	}
	fmt.Fprintf(a.stderr, "console at %s://%s/\n", scheme, lis.Addr())
	return nil
}
