package store

import (
	"context"
	"errors"

	"github.com/redis/go-redis/v9"
)

// reloadOnFailure is a go-redis hook that makes a cluster client reload its
// map of hash slots to nodes as soon as a command gets no answer, or a
// reply saying that the cluster is changing (see needsReload).
//
// go-redis reloads the map by itself only on a MOVED or ASK reply, and
// otherwise once a minute (ClusterStateReloadInterval). A master that
// crashes sends no MOVED: without the hook, a client keeps sending the
// commands of its slots to its dead address for up to a minute after a
// replica has taken them over. With it, the client asks for the map again
// while the commands fail, at most every 200 ms (go-redis coalesces
// reloads), and follows the new master within that time of its election.
type reloadOnFailure struct{ client *redis.ClusterClient }

var _ redis.Hook = reloadOnFailure{}

func (h reloadOnFailure) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h reloadOnFailure) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if err != nil && needsReload(err) {
			h.client.ReloadState(ctx)
		}
		return err
	}
}

func (h reloadOnFailure) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		if err == nil {
			return nil
		}
		// The pipeline's error is its first command's, which may be a
		// missing field while a later command found no node.
		for _, c := range cmds {
			if needsReload(c.Err()) {
				h.client.ReloadState(ctx)
				break
			}
		}
		return err
	}
}

// needsReload reports whether a command's error may mean that the cluster's
// map of slots has changed: the node did not answer (refused or reset
// connection, timeout), or answered that the cluster is failing over or
// resharding (see transient). A missing key, an error reply about the
// command itself, the caller's cancellation and a closed client do not.
func needsReload(err error) bool {
	if err == nil || errors.Is(err, redis.Nil) || errors.Is(err, context.Canceled) || errors.Is(err, redis.ErrClosed) {
		return false
	}
	var rerr redis.Error
	if errors.As(err, &rerr) {
		return transient(rerr)
	}
	return true
}

// followFailovers makes client, when it is a cluster client, reload its map
// of slots as soon as a command fails for want of a node (see
// reloadOnFailure).
func followFailovers(client redis.UniversalClient) {
	if cc, ok := client.(*redis.ClusterClient); ok {
		cc.AddHook(reloadOnFailure{cc})
	}
}

// reloadTopology asks a cluster client to reload its map of slots, after a
// failure that did not go through its hooks (a Pub/Sub connection's). It
// does nothing on another client.
func (s *Store) reloadTopology(ctx context.Context) {
	if cc, ok := s.client.(*redis.ClusterClient); ok {
		cc.ReloadState(ctx)
	}
}
