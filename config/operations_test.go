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
