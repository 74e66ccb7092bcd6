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

const (
	// clusterTimeout is how long a new cluster has to agree that it is
	// healthy.
	clusterTimeout = 30 * time.Second
	// clusterNodeTimeout is the cluster-node-timeout of StartCluster's
	// nodes: long enough that a test machine's stall is not taken for a
	// failed node.
	clusterNodeTimeout = 2 * time.Second
	// failoverNodeTimeout is the cluster-node-timeout of
	// StartClusterWithReplicas's nodes: a master that does not answer for
	// this long is failed over.
	failoverNodeTimeout = time.Second
)

// Cluster is a Redis Cluster of redis-server processes started by
// StartCluster (masters only) or StartClusterWithReplicas (masters and
// their replicas), with all 16384 slots assigned.
type Cluster struct {
	// Addrs are the nodes' host:port addresses, masters first. A client
	// given them all finds the cluster while any node answers.
	Addrs []string
	// Nodes are the node processes, in the order of Addrs; Stop one to
	// test a failed shard. Which node is a master changes after a
	// failover: see MasterOf.
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
	return startCluster(tb, n, 0, clusterNodeTimeout)
}

// StartClusterWithReplicas starts a Redis Cluster of masters (at least 1)
// as StartCluster does, and replicasPerMaster replicas of each, for tests
// of failover: Kill a master (KillMasterOf) and one of its replicas takes
// over its slots, about two seconds later (WaitHealthy). Its nodes time out
// after failoverNodeTimeout instead of StartCluster's longer timeout, and
// the replicas may take over however far behind they are; a test that
// needs its writes on the replicas before a kill calls WaitReplicated. It
// returns once every node agrees on the masters, the replicas and a
// healthy cluster, and every replica's link to its master is up.
func StartClusterWithReplicas(tb testing.TB, masters, replicasPerMaster int) *Cluster {
	tb.Helper()
	if replicasPerMaster < 0 {
		tb.Fatalf("redistest: %d replicas per master", replicasPerMaster)
	}
	return startCluster(tb, masters, replicasPerMaster, failoverNodeTimeout)
}

func startCluster(tb testing.TB, masters, replicasPerMaster int, nodeTimeout time.Duration) *Cluster {
	tb.Helper()
	if masters < 1 {
		tb.Fatalf("redistest: a cluster needs at least one node, got %d", masters)
	}
	bin, err := ensureBinary()
	if err != nil {
		tb.Fatalf("redistest: %v", err)
	}
	c := &Cluster{}
	tb.Cleanup(c.closeClients)
	for range masters * (1 + replicasPerMaster) {
		s := start(tb, bin, []string{
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", strconv.FormatInt(nodeTimeout.Milliseconds(), 10),
			"--cluster-require-full-coverage", "yes",
			// A replica takes over however long its link was down: the
			// tests decide what it holds (WaitReplicated).
			"--cluster-replica-validity-factor", "0",
			// Replicas sync at once rather than after the default 5 s
			// wait for more replicas.
			"--repl-diskless-sync-delay", "0",
		})
		c.Nodes = append(c.Nodes, s)
		c.Addrs = append(c.Addrs, s.Addr)
	}
	if err := c.form(masters); err != nil {
		tb.Fatalf("redistest: start a cluster of %d masters and %d replicas each: %v%s", masters, replicasPerMaster, err, c.output())
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

// form assigns the slots to the first masters nodes, introduces the nodes
// to each other, makes each of the others a replica of a master (in order:
// the first replicas of master 0, then of master 1, ...), and waits until
// every node sees a healthy cluster of all of them.
func (c *Cluster) form(masters int) error {
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	n := len(c.Nodes)
	perMaster := n/masters - 1
	clients := make([]*redis.Client, n)
	for i, s := range c.Nodes {
		clients[i] = redis.NewClient(&redis.Options{Addr: s.Addr})
		defer clients[i].Close()
	}
	const slots = 16384
	for i, cl := range clients[:masters] {
		first, last := i*slots/masters, (i+1)*slots/masters-1
		if err := cl.Do(ctx, "cluster", "addslotsrange", first, last).Err(); err != nil {
			return fmt.Errorf("assign slots %d-%d to %s: %w", first, last, c.Addrs[i], err)
		}
	}
	for i := 1; i < n; i++ {
		if err := clients[0].ClusterMeet(ctx, "127.0.0.1", strconv.Itoa(c.Nodes[i].port)).Err(); err != nil {
			return fmt.Errorf("introduce %s: %w", c.Addrs[i], err)
		}
	}
	ids := make([]string, masters)
	for i, cl := range clients[:masters] {
		id, err := cl.Do(ctx, "cluster", "myid").Text()
		if err != nil {
			return fmt.Errorf("node id of %s: %w", c.Addrs[i], err)
		}
		ids[i] = id
	}
	for i := masters; i < n; i++ {
		m := (i - masters) / perMaster
		// A replica can follow a master only once it has heard of it.
		if err := waitFor(ctx, func() error {
			return clients[i].Do(ctx, "cluster", "replicate", ids[m]).Err()
		}); err != nil {
			return fmt.Errorf("make %s a replica of %s: %w", c.Addrs[i], c.Addrs[m], err)
		}
	}
	return waitFor(ctx, func() error {
		for i, cl := range clients {
			if err := nodeAgrees(ctx, cl, n, n-masters); err != nil {
				return fmt.Errorf("node %s: %w", c.Addrs[i], err)
			}
			if i >= masters {
				info, err := cl.Info(ctx, "replication").Result()
				if err != nil {
					return err
				}
				if infoField(info, "master_link_status") != "up" {
					return fmt.Errorf("replica %s has not synced with its master %s:%s (sync in progress: %s, link down for %ss)",
						c.Addrs[i], infoField(info, "master_host"), infoField(info, "master_port"),
						infoField(info, "master_sync_in_progress"), infoField(info, "master_link_down_since_seconds"))
				}
			}
		}
		return nil
	})
}

// nodeAgrees returns nil when the node of cl reports a healthy cluster of
// nodes nodes, replicas of them replicas.
func nodeAgrees(ctx context.Context, cl *redis.Client, nodes, replicas int) error {
	info, err := cl.ClusterInfo(ctx).Result()
	if err != nil {
		return err
	}
	if state := infoField(info, "cluster_state"); state != "ok" {
		return fmt.Errorf("cluster_state is %s", state)
	}
	if known := infoField(info, "cluster_known_nodes"); known != strconv.Itoa(nodes) {
		return fmt.Errorf("knows %s of %d nodes", known, nodes)
	}
	if replicas == 0 {
		return nil
	}
	text, err := cl.ClusterNodes(ctx).Result()
	if err != nil {
		return err
	}
	seen := 0
	for _, line := range strings.Split(text, "\n") {
		// <id> <ip:port@bus> <flags> <master id> ...
		f := strings.Fields(line)
		if len(f) > 3 && slices.Contains(strings.Split(f[2], ","), "slave") && f[3] != "-" {
			seen++
		}
	}
	if seen != replicas {
		return fmt.Errorf("sees %d of %d replicas", seen, replicas)
	}
	return nil
}

// infoField returns the value of field in the text of an INFO or CLUSTER
// INFO reply, "" when it is missing.
func infoField(info, field string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			return v
		}
	}
	return ""
}

// waitFor calls check every 20 ms until it returns nil, and returns the
// last error of check when ctx ends first.
func waitFor(ctx context.Context, check func() error) error {
	for {
		err := check()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (still: %v)", ctx.Err(), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// output returns what the nodes printed, for an error message.
func (c *Cluster) output() string {
	var b strings.Builder
	for _, s := range c.Nodes {
		s.mu.Lock()
		if s.log != nil && s.log.Len() > 0 {
			fmt.Fprintf(&b, "\n%s printed:\n%s", s.Addr, tail(s.log.Bytes(), 2000))
		}
		s.mu.Unlock()
	}
	return b.String()
}
