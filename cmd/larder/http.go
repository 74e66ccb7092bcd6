package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
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
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		gw.Close()
		return fmt.Errorf("http: listen on %s: %w (pass another --http address, or set server.http_listen)", addr, err)
	}
	srv := &http.Server{Handler: gw, ReadHeaderTimeout: 10 * time.Second}
	scheme := "http"
	if sec := r.opts.security; sec != nil && sec.tls != nil {
		srv.TLSConfig, scheme = sec.tls.Clone(), "https"
		lis = tls.NewListener(lis, srv.TLSConfig)
	}
	r.background.Go(func() {
		if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.logger.Error("serving HTTP/JSON stopped", "err", err)
		}
	})
	r.background.Go(func() {
		<-r.watchCtx.Done()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		gw.Close()
	})
	fmt.Fprintf(a.stderr, "serving HTTP/JSON on %s://%s/v1/\n", scheme, lis.Addr())
	return nil
}
