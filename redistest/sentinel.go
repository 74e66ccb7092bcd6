package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Timings of the Sentinels that StartSentinel starts.
const (
	// sentinelDownAfter is how long the master may not answer before a
	// Sentinel takes it for down.
	sentinelDownAfter = time.Second
	// sentinelFailoverTimeout bounds each step of a failover, and is half
	// the wait before a failed one is tried again.
	sentinelFailoverTimeout = 3 * time.Second
	// sentinelQuorum Sentinels must agree that the master is down.
	sentinelQuorum = 2
)

// SentinelMaster is the name the Sentinels of StartSentinel know their
// master by.
const SentinelMaster = "larder"

// Sentinel is a Redis master, its replica and three Sentinels that watch
// them, started by StartSentinel.
type Sentinel struct {
	// MasterName is the name the Sentinels know the master by: what a
	// client's master name setting holds.
	MasterName string
	// Addrs are the Sentinels' addresses: what a client is given to find
	// the master.
	Addrs []string
	// Sentinels are the Sentinel processes.
	Sentinels []*Server
	// Nodes are the data nodes: the first master, then its replica. Which
	// of them is the master changes after a failover: see Master.
	Nodes []*Server

	mu      sync.Mutex
	clients []*redis.Client
}

// StartSentinel starts a master, one replica of it and three Sentinels
// that monitor it (quorum 2) on free loopback ports, and returns them once
// the replica has synced and every Sentinel knows the replica and the
// other two Sentinels, so that a failover can start at once. The Sentinels
// take a master that does not answer for a second for down; KillMaster
// then leads to a failover a few seconds later (WaitFailover). Everything
// is stopped when tb's cleanups run. StartSentinel calls tb.Fatal when the
// deployment cannot start.
func StartSentinel(tb testing.TB) *Sentinel {
	tb.Helper()
	bin, err := ensureBinary()
	if err != nil {
		tb.Fatalf("redistest: %v", err)
	}
	d := &Sentinel{MasterName: SentinelMaster}
	tb.Cleanup(d.closeClients)
	fastSync := []string{"--repl-diskless-sync-delay", "0"}
	master := start(tb, bin, fastSync)
	replica := start(tb, bin, append(fastSync, "--replicaof", "127.0.0.1", strconv.Itoa(master.port)))
	d.Nodes = []*Server{master, replica}
	conf := fmt.Sprintf("sentinel monitor %[1]s 127.0.0.1 %[2]d %[3]d\n"+
		"sentinel down-after-milliseconds %[1]s %[4]d\n"+
		"sentinel failover-timeout %[1]s %[5]d\n"+
		"sentinel parallel-syncs %[1]s 1\n",
		d.MasterName, master.port, sentinelQuorum, sentinelDownAfter.Milliseconds(), sentinelFailoverTimeout.Milliseconds())
	for range 3 {
		dir := tb.TempDir()
		// A Sentinel rewrites its file with what it learns.
		path := filepath.Join(dir, "sentinel.conf")
		if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
			tb.Fatalf("redistest: %v", err)
		}
		s := &Server{tb: tb, binary: bin, dir: dir, conf: path, args: []string{"--sentinel"}}
		tb.Cleanup(s.cleanup)
		if err := s.start(0); err != nil {
			tb.Fatalf("redistest: start a Sentinel: %v", err)
		}
		d.Sentinels = append(d.Sentinels, s)
		d.Addrs = append(d.Addrs, s.Addr)
	}
	if err := d.ready(); err != nil {
		tb.Fatalf("redistest: start a master, a replica and 3 Sentinels: %v", err)
	}
	return d
}

// ready waits until the replica has synced and every Sentinel knows it
// and the other Sentinels.
func (d *Sentinel) ready() error {
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	return waitFor(ctx, func() error {
		info, err := replicationInfo(ctx, d.Nodes[1].Addr)
		if err != nil {
			return err
		}
		if infoField(info, "master_link_status") != "up" {
			return fmt.Errorf("replica %s has not synced with its master", d.Nodes[1].Addr)
		}
		for _, s := range d.Sentinels {
			sc := redis.NewSentinelClient(&redis.Options{Addr: s.Addr, MaxRetries: -1})
			m, err := sc.Master(ctx, d.MasterName).Result()
			sc.Close()
			if err != nil {
				return fmt.Errorf("sentinel %s: %w", s.Addr, err)
			}
			if m["num-slaves"] != "1" || m["num-other-sentinels"] != strconv.Itoa(len(d.Sentinels)-1) {
				return fmt.Errorf("sentinel %s knows %s replicas and %s other Sentinels", s.Addr, m["num-slaves"], m["num-other-sentinels"])
			}
		}
		return nil
	})
}

// Client returns a new go-redis client of the master that the Sentinels
// name, with context deadlines enabled. It is closed when the test's
// cleanups run.
func (d *Sentinel) Client() *redis.Client {
	c := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: d.MasterName, SentinelAddrs: d.Addrs, ContextTimeoutEnabled: true})
	d.mu.Lock()
	d.clients = append(d.clients, c)
	d.mu.Unlock()
	return c
}

func (d *Sentinel) closeClients() {
	d.mu.Lock()
	clients := d.clients
	d.clients = nil
	d.mu.Unlock()
	for _, c := range clients {
		_ = c.Close()
	}
}

// Master returns the data node that the running Sentinels name as the
// master. It calls tb.Fatal when they do not agree, or name no running
// node.
func (d *Sentinel) Master(tb testing.TB) *Server {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	addr, err := d.masterAddr(ctx)
	if err != nil {
		tb.Fatalf("redistest: %v", err)
	}
	for _, s := range d.Nodes {
		if s.Addr == addr && s.Running() {
			return s
		}
	}
	tb.Fatalf("redistest: the Sentinels name %s as the master, which is not a running node", addr)
	return nil
}

// masterAddr returns the master's address as every running Sentinel
// names it, or an error when they do not agree.
func (d *Sentinel) masterAddr(ctx context.Context) (string, error) {
	var addr string
	for _, s := range d.Sentinels {
		if !s.Running() {
			continue
		}
		sc := redis.NewSentinelClient(&redis.Options{Addr: s.Addr, MaxRetries: -1})
		hp, err := sc.GetMasterAddrByName(ctx, d.MasterName).Result()
		sc.Close()
		if err != nil {
			return "", fmt.Errorf("sentinel %s: %w", s.Addr, err)
		}
		if len(hp) != 2 {
			return "", fmt.Errorf("sentinel %s names master %v", s.Addr, hp)
		}
		a := net.JoinHostPort(hp[0], hp[1])
		if addr != "" && a != addr {
			return "", fmt.Errorf("the Sentinels disagree on the master: %s and %s", addr, a)
		}
		addr = a
	}
	if addr == "" {
		return "", fmt.Errorf("no Sentinel is running")
	}
	return addr, nil
}

// KillMaster kills the master with SIGKILL (see Server.Kill) and returns
// it. The Sentinels promote the replica once they agree that it is down:
// see WaitFailover.
func (d *Sentinel) KillMaster(tb testing.TB) *Server {
	tb.Helper()
	s := d.Master(tb)
	s.Kill()
	return s
}

// WaitFailover waits up to timeout until every running Sentinel names a
// running node other than old as the master and that node answers as a
// master, and returns it and how long that took. It calls tb.Fatal when
// that does not happen in time.
func (d *Sentinel) WaitFailover(tb testing.TB, old *Server, timeout time.Duration) (*Server, time.Duration) {
	tb.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var master *Server
	err := waitFor(ctx, func() error {
		addr, err := d.masterAddr(ctx)
		if err != nil {
			return err
		}
		if addr == old.Addr {
			return fmt.Errorf("the Sentinels still name %s", addr)
		}
		for _, s := range d.Nodes {
			if s.Addr == addr && s.Running() {
				info, err := replicationInfo(ctx, addr)
				if err != nil {
					return err
				}
				if role := infoField(info, "role"); role != "master" {
					return fmt.Errorf("%s, named the master, is still a %s", addr, role)
				}
				master = s
				return nil
			}
		}
		return fmt.Errorf("the Sentinels name %s, which is not a running node", addr)
	})
	if err != nil {
		tb.Fatalf("redistest: no failover from %s within %s: %v", old.Addr, timeout, err)
	}
	return master, time.Since(start)
}

// WaitReplicated waits until every running replica has received
// everything its master had written when WaitReplicated was called, so
// that a master killed afterwards loses none of it. It calls tb.Fatal when
// that does not happen within 30 seconds.
func (d *Sentinel) WaitReplicated(tb testing.TB) {
	tb.Helper()
	if err := waitReplicated(d.Nodes); err != nil {
		tb.Fatalf("redistest: %v", err)
	}
}
