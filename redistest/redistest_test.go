package redistest_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/larder-dev/larder/redistest"
	"github.com/redis/go-redis/v9"
)

func TestStart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := redistest.Start(t)
	b := redistest.Start(t)
	if a.Addr == b.Addr {
		t.Fatalf("two servers share address %s", a.Addr)
	}
	if a.Addr == "127.0.0.1:6379" || b.Addr == "127.0.0.1:6379" {
		t.Fatal("a test server took the default Redis port")
	}

	tests := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"ping", func(t *testing.T) {
			if err := a.Client().Ping(ctx).Err(); err != nil {
				t.Fatal(err)
			}
		}},
		{"servers are isolated", func(t *testing.T) {
			if err := a.Client().Set(ctx, "k", "a", 0).Err(); err != nil {
				t.Fatal(err)
			}
			if n, err := b.Client().Exists(ctx, "k").Result(); err != nil || n != 0 {
				t.Fatalf("key of server a visible on server b: n=%d err=%v", n, err)
			}
		}},
		{"persistence is off", func(t *testing.T) {
			cfg, err := a.Client().ConfigGet(ctx, "save").Result()
			if err != nil {
				t.Fatal(err)
			}
			if cfg["save"] != "" {
				t.Fatalf("save = %q, want empty", cfg["save"])
			}
			aof, err := a.Client().ConfigGet(ctx, "appendonly").Result()
			if err != nil {
				t.Fatal(err)
			}
			if aof["appendonly"] != "no" {
				t.Fatalf("appendonly = %q, want no", aof["appendonly"])
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, tt.run)
	}
}

func TestStopAndRestart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := redistest.Start(t)
	c := s.Client()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	addr := s.Addr

	s.Stop()
	s.Stop() // stopping twice is harmless
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := c.Ping(short).Err(); err == nil {
		t.Fatal("PING answered by a stopped server")
	}

	s.Restart()
	if s.Addr != addr {
		t.Fatalf("restart moved the server from %s to %s", addr, s.Addr)
	}
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING after restart: %v", err)
	}
	if n, err := c.Exists(ctx, "k").Result(); err != nil || n != 0 {
		t.Fatalf("data survived a restart without persistence: n=%d err=%v", n, err)
	}
}

func TestManyServers(t *testing.T) {
	t.Parallel()
	for i := 0; i < 6; i++ {
		t.Run("server", func(t *testing.T) {
			t.Parallel()
			s := redistest.Start(t)
			if err := s.Client().Ping(context.Background()).Err(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestStartCluster(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := redistest.StartCluster(t, 3)
	if len(c.Addrs) != 3 {
		t.Fatalf("%d nodes, want 3", len(c.Addrs))
	}
	cc := c.Client()
	// Keys in different slots land on different nodes; the client routes them.
	for i := range 100 {
		if err := cc.Set(ctx, fmt.Sprintf("key-%d", i), i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	var masters atomic.Int32
	err := cc.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
		size, err := n.DBSize(ctx).Result()
		if err != nil {
			return err
		}
		if size == 0 {
			return fmt.Errorf("node %s holds no key", n.Options().Addr)
		}
		masters.Add(1)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if masters.Load() != 3 {
		t.Fatalf("%d masters, want 3", masters.Load())
	}
}

func TestPauseAndResume(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := redistest.Start(t)
	c := s.Client()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}

	s.Pause()
	s.Pause() // pausing twice is harmless
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := c.Get(short, "k").Err(); err == nil {
		t.Fatal("GET answered by a paused server")
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("GET on a paused server took %v, want about the context's 200ms", took)
	}

	s.Resume()
	if v, err := c.Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Fatalf("GET after resume = %q, %v; want the data kept", v, err)
	}

	// A paused server stops promptly at cleanup, as Stop does.
	s.Pause()
	start = time.Now()
	s.Stop()
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("stopping a paused server took %v", took)
	}
}
