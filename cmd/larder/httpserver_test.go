package main

import (
	"net/http"
	"testing"
	"time"
)

// TestHTTPServerTimeouts checks that larder's HTTP listeners (the gateway,
// the console, metrics) drop a connection that sends its headers too slowly, and
// one left idle between requests, rather than hold it, and its goroutine,
// for as long as the peer likes.
func TestHTTPServerTimeouts(t *testing.T) {
	srv := (&app{}).httpServer(http.NotFoundHandler())
	for _, tc := range []struct {
		name string
		got  time.Duration
	}{
		{"ReadHeaderTimeout", srv.ReadHeaderTimeout},
		{"IdleTimeout", srv.IdleTimeout},
	} {
		if tc.got <= 0 || tc.got > 10*time.Minute {
			t.Errorf("%s = %s, want a bound between 0 and 10m", tc.name, tc.got)
		}
	}
	// ReadTimeout and WriteTimeout would end calls that take long: a
	// request's own deadline bounds those.
	if srv.ReadTimeout != 0 || srv.WriteTimeout != 0 {
		t.Errorf("ReadTimeout %s, WriteTimeout %s: want none", srv.ReadTimeout, srv.WriteTimeout)
	}
}
