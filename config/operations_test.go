package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/larder-dev/larder/config"
)

// TestParseOperations reads the serving settings of operations: a ranker's
// model_timeout and server.metrics_listen, their defaults, and their errors.
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
