package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/larder-dev/larder/server"
)

// startHTTP serves the HTTP/JSON gateway of r's gRPC server on r.opts.http,
// when it is set, until r is closed, and prints its address. It listens
// with the TLS of r's other listeners; its requests pass through the same
// authentication, limits and metrics as gRPC calls.
func (a *app) startHTTP(r *running) error {
	addr := r.opts.http
	if addr == "" {
		return nil
	}
	gw, err := server.NewHTTP(r.svc, a.logger)
	if err != nil {
		return err
	}
	lis := r.opts.listeners.http
	if lis == nil {
		if lis, err = net.Listen("tcp", addr); err != nil {
			gw.Close()
			return fmt.Errorf("http: listen on %s: %w (pass another --http address, or set server.http_listen)", addr, err)
		}
	}
	lis, scheme := a.serveHTTPOn(r, lis, gw, "HTTP/JSON", func() { gw.Close() })
	fmt.Fprintf(a.stderr, "serving HTTP/JSON on %s://%s/v1/\n", scheme, lis.Addr())
	return nil
}

// serveHTTPOn serves h on lis until r is closed, with the TLS of r's other
// listeners when it has one, logging why it stopped if it stops by itself
// (what names it), and calls onClose, when not nil, once it has shut down.
// It returns the listener it serves, TLS-wrapped when TLS is on, and its
// scheme, "http" or "https".
func (a *app) serveHTTPOn(r *running, lis net.Listener, h http.Handler, what string, onClose func()) (net.Listener, string) {
	srv := a.httpServer(h)
	scheme := "http"
	if sec := r.opts.security; sec != nil && sec.tls != nil {
		srv.TLSConfig, scheme = sec.tls.Clone(), "https"
		lis = tls.NewListener(lis, srv.TLSConfig)
	}
	r.background.Go(func() {
		if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.logger.Error("serving "+what+" stopped", "err", err)
		}
	})
	r.background.Go(func() {
		<-r.watchCtx.Done()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		if onClose != nil {
			onClose()
		}
	})
	return lis, scheme
}

// httpServer returns the server of an HTTP listener of larder, serving h.
// A connection gets 10s to send a request's headers, and one idle between
// requests is closed after 2m, so that a peer that opens connections and
// leaves them silent does not hold a goroutine and a descriptor each for
// good. There is no ReadTimeout or WriteTimeout: they would also end a call
// that takes long, which the request's deadline bounds instead.
func (a *app) httpServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, ErrorLog: a.httpErrorLog()}
}

// httpErrorLog is where an HTTP server of larder writes what goes wrong on
// its connections (a TLS handshake that fails, say): a's logger, at WARN,
// so that it follows --log-format and --log-level; nil (net/http's own, to
// standard error) when a has no logger yet.
func (a *app) httpErrorLog() *log.Logger {
	if a.logger == nil {
		return nil
	}
	return slog.NewLogLogger(a.logger.Handler(), slog.LevelWarn)
}
