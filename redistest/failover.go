package redistest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// MasterOf returns the node that serves key now: the master of key's hash
// slot, as the running nodes see it. It calls tb.Fatal when no running node
// names a running master for the slot.
func (c *Cluster) MasterOf(tb testing.TB, key string) *Server {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	var master *Server
	err := c.eachRunning(ctx, func(cl *redis.Client, _ *Server) error {
		if master != nil {
			return nil
		}
		slot, err := cl.ClusterKeySlot(ctx, key).Result()
		if err != nil {
			return err
		}
		//lint:ignore SA1019 CLUSTER SLOTS names each range's master first, all this reads; CLUSTER SHARDS says it at more length.
		ranges, err := cl.ClusterSlots(ctx).Result()
		if err != nil {
			return err
		}
		for _, r := range ranges {
			if int64(r.Start) <= slot && slot <= int64(r.End) && len(r.Nodes) > 0 {
				if s := c.node(r.Nodes[0].Addr); s != nil && s.Running() {
					master = s
					return nil
				}
				return fmt.Errorf("slot %d is served by %s, which is not running", slot, r.Nodes[0].Addr)
			}
		}
		return fmt.Errorf("no node serves slot %d", slot)
	})
	if master == nil {
		tb.Fatalf("redistest: the master of key %q: %v", key, err)
	}
	return master
}

// KillMasterOf kills the master of key's hash slot with SIGKILL (see
// Server.Kill) and returns it. Its replica takes over its slots once the
// other masters agree that it failed, which takes a little more than the
// nodes' timeout; meanwhile every command on the cluster may fail with
// CLUSTERDOWN, as the cluster requires every slot to be served.
func (c *Cluster) KillMasterOf(tb testing.TB, key string) *Server {
	tb.Helper()
	s := c.MasterOf(tb, key)
	s.Kill()
	return s
}

// WaitHealthy waits up to d until every running node reports a healthy
// cluster in which every slot is served by a running master, as after a
// failover, and returns how long it waited. It calls tb.Fatal when that
// does not happen within d.
func (c *Cluster) WaitHealthy(tb testing.TB, d time.Duration) time.Duration {
	tb.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	err := waitFor(ctx, func() error {
		return c.eachRunning(ctx, func(cl *redis.Client, s *Server) error {
			info, err := cl.ClusterInfo(ctx).Result()
			if err != nil {
				return err
			}
			if state := infoField(info, "cluster_state"); state != "ok" {
				return fmt.Errorf("%s: cluster_state is %s", s.Addr, state)
			}
			//lint:ignore SA1019 as in MasterOf.
			ranges, err := cl.ClusterSlots(ctx).Result()
			if err != nil {
				return err
			}
			served := 0
			for _, r := range ranges {
				if len(r.Nodes) == 0 {
					continue
				}
				if m := c.node(r.Nodes[0].Addr); m == nil || !m.Running() {
					return fmt.Errorf("%s: slots %d-%d are served by %s, which is not running", s.Addr, r.Start, r.End, r.Nodes[0].Addr)
				}
				served += int(r.End - r.Start + 1)
			}
			if served != 16384 {
				return fmt.Errorf("%s: %d of 16384 slots are served", s.Addr, served)
			}
			return nil
		})
	})
	if err != nil {
		tb.Fatalf("redistest: the cluster is not healthy again within %s: %v", d, err)
	}
	return time.Since(start)
}

// WaitReplicated waits until every running replica has received
// everything its master had written when WaitReplicated was called, so
// that a master killed afterwards loses none of it. It calls tb.Fatal when
// that does not happen within 30 seconds.
func (c *Cluster) WaitReplicated(tb testing.TB) {
	tb.Helper()
	if err := waitReplicated(c.Nodes); err != nil {
		tb.Fatalf("redistest: %v", err)
	}
}

// node returns the node of addr, nil when it is not one of the cluster's.
func (c *Cluster) node(addr string) *Server {
	for _, s := range c.Nodes {
		if s.Addr == addr {
			return s
		}
	}
	return nil
}

// eachRunning calls fn with a client of each running node in turn, and
// returns the first error.
func (c *Cluster) eachRunning(ctx context.Context, fn func(*redis.Client, *Server) error) error {
	running := 0
	for _, s := range c.Nodes {
		if !s.Running() {
			continue
		}
		running++
		cl := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1})
		err := fn(cl, s)
		cl.Close()
		if err != nil {
			return err
		}
	}
	if running == 0 {
		return errors.New("no node is running")
	}
	return ctx.Err()
}

// waitReplicated waits until every running replica among nodes has caught
// up with the replication offset its master had at the start.
func waitReplicated(nodes []*Server) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	type replica struct {
		s    *Server
		want int64 // the master's offset
	}
	offsets := map[string]int64{} // by master address
	var replicas []replica
	for _, s := range nodes {
		if !s.Running() {
			continue
		}
		info, err := replicationInfo(ctx, s.Addr)
		if err != nil {
			return err
		}
		switch infoField(info, "role") {
		case "master":
			if offsets[s.Addr], err = strconv.ParseInt(infoField(info, "master_repl_offset"), 10, 64); err != nil {
				return fmt.Errorf("%s: bad master_repl_offset: %w", s.Addr, err)
			}
		case "slave":
			replicas = append(replicas, replica{s: s})
		}
	}
	for i, r := range replicas {
		info, err := replicationInfo(ctx, r.s.Addr)
		if err != nil {
			return err
		}
		master := infoField(info, "master_host") + ":" + infoField(info, "master_port")
		want, ok := offsets[master]
		if !ok {
			return fmt.Errorf("replica %s follows %s, which is not a running master", r.s.Addr, master)
		}
		replicas[i].want = want
	}
	for _, r := range replicas {
		err := waitFor(ctx, func() error {
			info, err := replicationInfo(ctx, r.s.Addr)
			if err != nil {
				return err
			}
			got, _ := strconv.ParseInt(infoField(info, "slave_repl_offset"), 10, 64)
			if infoField(info, "master_link_status") != "up" || got < r.want {
				return fmt.Errorf("replica %s is at offset %d of %d, link %s", r.s.Addr, got, r.want, infoField(info, "master_link_status"))
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("replication: %w", err)
		}
	}
	return nil
}

func replicationInfo(ctx context.Context, addr string) (string, error) {
	cl := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer cl.Close()
	info, err := cl.Info(ctx, "replication").Result()
	if err != nil {
		return "", fmt.Errorf("INFO replication of %s: %w", addr, err)
	}
	return info, nil
}
