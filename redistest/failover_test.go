package redistest_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/larder-dev/larder/redistest"
	"github.com/redis/go-redis/v9"
)

func TestClusterFailover(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := redistest.StartClusterWithReplicas(t, 3, 1)
	if len(c.Nodes) != 6 {
		t.Fatalf("%d nodes, want 6", len(c.Nodes))
	}
	cc := c.Client()
	const keys = 200
	for i := range keys {
		if err := cc.Set(ctx, fmt.Sprintf("key-%d", i), i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	c.WaitReplicated(t)
	old := c.KillMasterOf(t, "key-0")
	if old.Running() {
		t.Fatal("a killed master still runs")
	}
	took := c.WaitHealthy(t, 30*time.Second)
	t.Logf("the cluster was healthy again %s after the kill", took.Round(time.Millisecond))
	if m := c.MasterOf(t, "key-0"); m == old {
		t.Fatalf("key-0 is still served by the killed %s", old.Addr)
	}
	// A new client finds the new master, and the replica had every key.
	fresh := c.Client()
	for i := range keys {
		n, err := fresh.Get(ctx, fmt.Sprintf("key-%d", i)).Int()
		if err != nil || n != i {
			t.Fatalf("key-%d after the failover = %d, %v; want %d", i, n, err, i)
		}
	}
}

func TestSentinelFailover(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := redistest.StartSentinel(t)
	if len(d.Addrs) != 3 || len(d.Nodes) != 2 || d.MasterName == "" {
		t.Fatalf("%d Sentinels, %d nodes, master name %q", len(d.Addrs), len(d.Nodes), d.MasterName)
	}
	c := d.Client()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	d.WaitReplicated(t)
	old := d.KillMaster(t)
	if old != d.Nodes[0] {
		t.Fatalf("killed %s, want the first master %s", old.Addr, d.Nodes[0].Addr)
	}
	master, took := d.WaitFailover(t, old, 30*time.Second)
	t.Logf("the Sentinels named %s the master %s after the kill", master.Addr, took.Round(time.Millisecond))
	if master != d.Nodes[1] {
		t.Fatalf("new master %s, want the replica %s", master.Addr, d.Nodes[1].Addr)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		v, err := d.Client().Get(ctx, "k").Result()
		if err == nil {
			if v != "v" {
				t.Fatalf("k = %q after the failover, want v", v)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET after the failover: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestPauseAndKill(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := redistest.Start(t)
	c := redis.NewClient(&redis.Options{Addr: s.Addr, ContextTimeoutEnabled: true, MaxRetries: -1})
	defer c.Close()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}

	s.Pause()
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	err := c.Get(short, "k").Err()
	cancel()
	if err == nil {
		t.Fatal("a paused server answered")
	}
	s.Resume()
	if v, err := c.Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Fatalf("GET after Resume = %q, %v", v, err)
	}

	s.Pause() // left paused: the cleanup resumes it before stopping it

	k := redistest.Start(t)
	k.Kill()
	k.Kill() // killing twice is harmless
	if k.Running() {
		t.Fatal("a killed server runs")
	}
	kc := k.Client()
	if err := kc.Ping(ctx).Err(); err == nil {
		t.Fatal("a killed server answered")
	}
	k.Restart()
	if !k.Running() {
		t.Fatal("a restarted server does not run")
	}
	if err := kc.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING after Restart: %v", err)
	}
}
