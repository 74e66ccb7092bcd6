package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/config"
)

// TestParseOperations reads the serving settings of operations: a ranker's
// model_timeout, server.metrics_listen and server.admin_listen, their
// defaults, and their errors.
func TestParseOperations(t *testing.T) {
	t.Run("set", func(t *testing.T) {
		src := edit(t, base, 44, "    top_k: 10", "    top_k: 10\n    model_timeout: 250ms")
		src = edit(t, src, 7, "  max_entities: 500", "  max_entities: 500\n  metrics_listen: 127.0.0.1:9464")
		p, err := config.Parse("larder.yaml", []byte(src))
		if err != nil {
			t.Fatal(err)
		}
		if p.Server.MetricsListen != "127.0.0.1:9464" || p.Rankers[0].ModelTimeout != 250*time.Millisecond {
			t.Errorf("metrics_listen %q, model_timeout %s; want 127.0.0.1:9464, 250ms", p.Server.MetricsListen, p.Rankers[0].ModelTimeout)
		}
	})
	t.Run("left out", func(t *testing.T) {
		p, err := config.Parse("larder.yaml", []byte(base))
		if err != nil {
			t.Fatal(err)
		}
		// Zero means the default: no metrics endpoint, and
		// larder.DefaultModelTimeout, which the server applies.
		if p.Server.MetricsListen != "" || p.Rankers[0].ModelTimeout != 0 {
			t.Errorf("metrics_listen %q, model_timeout %s; want empty and 0", p.Server.MetricsListen, p.Rankers[0].ModelTimeout)
		}
	})
	t.Run("admin_listen", func(t *testing.T) {
		src := edit(t, base, 7, "  max_entities: 500", "  max_entities: 500\n  admin_listen: 127.0.0.1:50052")
		p, err := config.Parse("larder.yaml", []byte(src))
		if err != nil {
			t.Fatal(err)
		}
		if p.Server.AdminListen != "127.0.0.1:50052" || p.Server.Listen != "127.0.0.1:50051" {
			t.Errorf("admin_listen %q, listen %q; want 127.0.0.1:50052, 127.0.0.1:50051", p.Server.AdminListen, p.Server.Listen)
		}
		// Left out, the AdminService stays on server.listen.
		if p, err = config.Parse("larder.yaml", []byte(base)); err != nil || p.Server.AdminListen != "" {
			t.Errorf("admin_listen left out: %q, %v; want empty", p.Server.AdminListen, err)
		}
	})
	t.Run("http_listen", func(t *testing.T) {
		src := edit(t, base, 7, "  max_entities: 500", "  max_entities: 500\n  http_listen: 127.0.0.1:8080")
		p, err := config.Parse("larder.yaml", []byte(src))
		if err != nil {
			t.Fatal(err)
		}
		if p.Server.HTTPListen != "127.0.0.1:8080" {
			t.Errorf("http_listen %q, want 127.0.0.1:8080", p.Server.HTTPListen)
		}
		for _, tc := range []struct{ value, want string }{
			{"8080", `server.http_listen: want host:port, such as 127.0.0.1:8080; got "8080"`},
			{"127.0.0.1:50051", "server.http_listen: is the same address as server.listen (127.0.0.1:50051)"},
		} {
			src := edit(t, base, 7, "  max_entities: 500", "  max_entities: 500\n  http_listen: "+tc.value)
			_, err := config.Parse("larder.yaml", []byte(src))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("http_listen %s: %v, want an error saying %q", tc.value, err, tc.want)
			}
		}
	})
	t.Run("admin_listen on any free port", func(t *testing.T) {
		src := edit(t, base, 6, "  listen: 127.0.0.1:50051", "  listen: 127.0.0.1:0\n  admin_listen: 127.0.0.1:0")
		if _, err := config.Parse("larder.yaml", []byte(src)); err != nil {
			t.Errorf("listen and admin_listen both on port 0: %v, want no error", err)
		}
	})
	for _, tc := range []struct {
		name, listen, listenAt string
	}{
		{"admin_listen is listen", "127.0.0.1:50051", "  listen: 127.0.0.1:50051"},
		{"admin_listen is the default listen", larder.DefaultListen, "  # listen: the default"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := edit(t, base, 6, "  listen: 127.0.0.1:50051", tc.listenAt)
			src = edit(t, src, 7, "  max_entities: 500", "  max_entities: 500\n  admin_listen: "+tc.listen)
			_, err := config.Parse("larder.yaml", []byte(src))
			if err == nil {
				t.Fatal("no error")
			}
			ps := problems(t, err)
			want := "is the same address as server.listen (" + tc.listen + "): give the AdminService a port of its own"
			if len(ps) != 1 || ps[0].Line != 8 || ps[0].Column != 17 || ps[0].Field != "server.admin_listen" || !strings.Contains(ps[0].Msg, want) {
				t.Errorf("problems %+v, want one at 8:17, server.admin_listen, %q", ps, want)
			}
		})
	}
	for _, tc := range []struct {
		name, value, msg string
	}{
		{"negative", "-1s", "must be positive: how long one run of the model may take, such as 100ms"},
		{"not a duration", "soon", "soon"},
	} {
		t.Run("model_timeout "+tc.name, func(t *testing.T) {
			src := edit(t, base, 44, "    top_k: 10", "    top_k: 10\n    model_timeout: "+tc.value)
			_, err := config.Parse("larder.yaml", []byte(src))
			if err == nil {
				t.Fatal("no error")
			}
			ps := problems(t, err)
			if ps[0].Line != 45 || ps[0].Field != "rankers[0].model_timeout" || !strings.Contains(ps[0].Msg, tc.msg) {
				t.Errorf("problem %+v, want line 45, rankers[0].model_timeout, %q", ps[0], tc.msg)
			}
		})
	}
}

// TestParseServerLimits reads the server's limits: set, left out, and
// their errors, each at its file, line and field.
func TestParseServerLimits(t *testing.T) {
	limits := "  max_entities: 500\n  max_features: 10\n  max_request_cells: 2000\n  max_response_bytes: 1MiB\n" +
		"  max_concurrent_requests: 8\n  default_deadline: 750ms\n  max_deadline: 3s"
	t.Run("set", func(t *testing.T) {
		p, err := config.Parse("larder.yaml", []byte(edit(t, base, 7, "  max_entities: 500", limits)))
		if err != nil {
			t.Fatal(err)
		}
		s := p.Server
		if s.MaxFeatures != 10 || s.MaxRequestCells != 2000 || s.MaxResponseBytes != 1<<20 || s.MaxConcurrentRequests != 8 ||
			s.DefaultDeadline != 750*time.Millisecond || s.MaxDeadline != 3*time.Second {
			t.Errorf("Server = %+v", s)
		}
	})
	t.Run("a size in bytes", func(t *testing.T) {
		p, err := config.Parse("larder.yaml", []byte(edit(t, base, 7, "  max_entities: 500", "  max_response_bytes: 123456")))
		if err != nil || p.Server.MaxResponseBytes != 123456 {
			t.Errorf("max_response_bytes: 123456 = %d, %v", p.Server.MaxResponseBytes, err)
		}
	})
	t.Run("left out", func(t *testing.T) {
		p, err := config.Parse("larder.yaml", []byte(base))
		if err != nil {
			t.Fatal(err)
		}
		s := p.Server
		if s.MaxFeatures != larder.DefaultMaxFeatures || s.MaxRequestCells != larder.DefaultMaxRequestCells ||
			s.MaxResponseBytes != larder.DefaultMaxResponseBytes || s.MaxConcurrentRequests != larder.DefaultMaxConcurrentRequests ||
			s.DefaultDeadline != larder.DefaultDeadline || s.MaxDeadline != larder.DefaultMaxDeadline {
			t.Errorf("Server = %+v, want the default limits", s)
		}
	})
	for _, tc := range []struct {
		name, line string
		wantLine   int
		wantCol    int
		field, msg string
	}{
		{"zero max_features", "  max_features: 0", 7, 17, "server.max_features", "must be positive, got 0; leave max_features out for the default, 1000"},
		{"negative max_request_cells", "  max_request_cells: -5", 7, 22, "server.max_request_cells", "must be positive, got -5"},
		{"zero max_request_cells", "  max_request_cells: 0", 7, 22, "server.max_request_cells", "leave max_request_cells out for the default, 100000"},
		{"text for max_concurrent_requests", "  max_concurrent_requests: many", 7, 28, "server.max_concurrent_requests", `want a whole number; got "many"`},
		{"zero max_concurrent_requests", "  max_concurrent_requests: 0", 7, 28, "server.max_concurrent_requests", "leave max_concurrent_requests out for the default, 256"},
		{"bad size", "  max_response_bytes: 64 megs", 7, 23, "server.max_response_bytes", `invalid size "64 megs": write a whole number and a unit (B, KB, MB, GB, KiB, MiB or GiB), such as 64MiB`},
		{"zero size", "  max_response_bytes: 0MiB", 7, 23, "server.max_response_bytes", "must be positive, got 0MiB; leave max_response_bytes out for the default, 64MiB"},
		{"zero bytes", "  max_response_bytes: 0", 7, 23, "server.max_response_bytes", "must be positive, got 0; leave max_response_bytes out for the default, 64MiB"},
		{"negative bytes", "  max_response_bytes: -1", 7, 23, "server.max_response_bytes", "must be positive, got -1"},
		{"list for a size", "  max_response_bytes: [1]", 7, 23, "server.max_response_bytes", "want a size such as 64MiB or 1000000; got a list"},
		{"bad deadline", "  default_deadline: soon", 7, 21, "server.default_deadline", `invalid duration "soon"`},
		{"zero deadline", "  default_deadline: 0s", 7, 21, "server.default_deadline", "must be positive, got 0s; leave default_deadline out for the default, 5s"},
		{"negative max_deadline", "  max_deadline: -1s", 7, 17, "server.max_deadline", "must be positive, got -1s"},
		{"default past max", "  default_deadline: 40s", 7, 21, "server.default_deadline", "must not be longer than max_deadline (30s), got 40s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Parse("larder.yaml", []byte(edit(t, base, 7, "  max_entities: 500", tc.line)))
			ps := problems(t, err)
			if len(ps) != 1 {
				t.Fatalf("%d problems, want 1: %v", len(ps), err)
			}
			p := ps[0]
			if p.Line != tc.wantLine || p.Column != tc.wantCol || p.Field != tc.field || !strings.Contains(p.Msg, tc.msg) {
				t.Errorf("problem = %d:%d %s: %s\nwant %d:%d %s: ...%s...", p.Line, p.Column, p.Field, p.Msg, tc.wantLine, tc.wantCol, tc.field, tc.msg)
			}
		})
	}
}
