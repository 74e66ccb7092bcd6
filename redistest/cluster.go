package redistest

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// clusterBusOffset is the distance between a cluster node's client port and
// its cluster bus port.
const clusterBusOffset = 10000

// clusterTimeout is how long a new cluster has to agree that it is healthy.
const clusterTimeout = 20 * time.Second

// Cluster is a Redis Cluster of redis-server processes started by
// StartCluster: masters only, no replicas, all 16384 slots assigned.
type Cluster struct {
	// Addrs are the nodes' host:port addresses.
	Addrs []string
	// Nodes are the node processes; Stop one to test a failed shard.
	Nodes []*Server

	mu      sync.Mutex
	clients []*redis.ClusterClient
}

// StartCluster starts a Redis Cluster of n masters (at least 1) on free
// loopback ports, splits the hash slots evenly between them, and returns it
// once every node reports the cluster healthy. It is stopped when tb's
// cleanups run. StartCluster calls tb.Fatal when the cluster cannot start.
func StartCluster(tb testing.TB, n int) *Cluster {
	tb.Helper()
	if n < 1 {
		tb.Fatalf("redistest: a cluster needs at least one node, got %d", n)
	}
	bin, err := ensureBinary()
	if err != nil {
		tb.Fatalf("redistest: %v", err)
	}
	c := &Cluster{}
	tb.Cleanup(c.closeClients)
	for range n {
		s := start(tb, bin, []string{
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "2000",
			"--cluster-require-full-coverage", "yes",
		})
		c.Nodes = append(c.Nodes, s)
		c.Addrs = append(c.Addrs, s.Addr)
	}
	if err := c.form(); err != nil {
		tb.Fatalf("redistest: start a cluster of %d: %v", n, err)
	}
	return c
}

// Client returns a new go-redis cluster client of the cluster, with context
// deadlines enabled. It is closed when the test's cleanups run.
func (c *Cluster) Client() *redis.ClusterClient {
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs, ContextTimeoutEnabled: true})
	c.mu.Lock()
	c.clients = append(c.clients, cc)
	c.mu.Unlock()
	return cc
}

func (c *Cluster) closeClients() {
	c.mu.Lock()
	clients := c.clients
	c.clients = nil
	c.mu.Unlock()
	for _, cc := range clients {
		_ = cc.Close()
	}
}

// form assigns the slots, introduces the nodes to each other and waits until
// every node sees a healthy cluster of all of them.
func (c *Cluster) form() error {
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	n := len(c.Nodes)
	clients := make([]*redis.Client, n)
	for i, s := range c.Nodes {
		clients[i] = redis.NewClient(&redis.Options{Addr: s.Addr})
		defer clients[i].Close()
	}
	const slots = 16384
	for i, cl := range clients {
		first, last := i*slots/n, (i+1)*slots/n-1
		if err := cl.Do(ctx, "cluster", "addslotsrange", first, last).Err(); err != nil {
			return fmt.Errorf("assign slots %d-%d to %s: %w", first, last, c.Addrs[i], err)
		}
	}
	for i := 1; i < n; i++ {
		if err := clients[0].ClusterMeet(ctx, "127.0.0.1", strconv.Itoa(c.Nodes[i].port)).Err(); err != nil {
			return fmt.Errorf("introduce %s: %w", c.Addrs[i], err)
		}
	}
	for {
		healthy := 0
		for _, cl := range clients {
			info, err := cl.ClusterInfo(ctx).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") &&
				slices.Contains(strings.Fields(strings.ReplaceAll(info, "\r", "")), "cluster_known_nodes:"+strconv.Itoa(n)) {
				healthy++
			}
		}
		if healthy == n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not healthy within %s (%d of %d nodes agree)", clusterTimeout, healthy, n)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
