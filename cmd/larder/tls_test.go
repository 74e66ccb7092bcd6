package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/larder-dev/larder/redistest"
)

// TestRedisTLSMismatch points a project with TLS at a plaintext port: the
// error says that TLS may be the cause, rather than only timing out.
func TestRedisTLSMismatch(t *testing.T) {
	t.Parallel() // mostly waiting on child processes and servers
	srv := redistest.Start(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "larder.yaml")
	yaml := `project: p
redis:
  addresses: ["` + srv.Addr + `"]
  tls: true
entities:
  - {name: user, key: user_id, type: int64}
sources:
  - {name: s, path: s.parquet, event_time: ts}
views:
  - name: v
    kind: latest
    entity: user
    source: s
    features:
      - {name: x, type: int64}
`
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r := larderAt(t, t.Context(), t0, "-c", cfg, "views")
	if r.code == 0 || !strings.Contains(r.stderr, "redis.tls is on: does the server speak TLS on this port?") {
		t.Fatalf("exit %d, stderr %q: want a hint about TLS", r.code, r.stderr)
	}
	t.Logf("failed after %s: %s", time.Since(start).Round(time.Millisecond), strings.TrimSpace(r.stderr))
}
