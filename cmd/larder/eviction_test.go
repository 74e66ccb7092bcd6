package main

import (
	"os"
	"strings"
	"testing"
)

// TestEvictionPolicyRefused runs materialize against a Redis that may evict
// keys: refused, saying why and how to proceed; allowed with
// redis.allow_eviction, with a warning.
func TestEvictionPolicyRefused(t *testing.T) {
	p := newTinyProject(t)
	if err := p.redis.Client().ConfigSet(t.Context(), "maxmemory-policy", "allkeys-lru").Err(); err != nil {
		t.Fatal(err)
	}
	r := p.larder(t, t0, "materialize", "user_profile")
	if r.code == 0 || !strings.Contains(r.stderr, "maxmemory-policy is allkeys-lru") || !strings.Contains(r.stderr, "allow_eviction") {
		t.Fatalf("exit %d, stderr %q: want a refusal naming the policy and the override", r.code, r.stderr)
	}
	cfg, err := os.ReadFile(p.config)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(cfg), "project: tiny", "project: tiny\nredis:\n  allow_eviction: true", 1)
	if err := os.WriteFile(p.config, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	r = p.larder(t, t0, "materialize", "user_profile")
	mustSucceed(t, r, "materialize with allow_eviction")
	if !strings.Contains(r.stderr, "warning: redis maxmemory-policy is allkeys-lru") {
		t.Errorf("no warning: %q", r.stderr)
	}
}
