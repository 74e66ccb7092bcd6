package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/larder-dev/larder"
	"github.com/redis/go-redis/v9"
)

// scanCount is the COUNT hint of SCAN and HSCAN.
const scanCount = 1000

// ScanOptions filter Scan. The zero ScanOptions visits every stored entity
// of every view and generation.
type ScanOptions struct {
	// View limits the scan to one view.
	View string
	// Match is a Redis glob pattern over canonical entity keys, such as
	// "12*"; empty means all.
	Match string
	// Limit stops the scan after that many entities; 0 means no limit.
	Limit int
}

// KeyInfo is one stored entity row, as Scan finds it.
type KeyInfo struct {
	// RedisKey is the bucket hash holding the row.
	RedisKey   string
	View       string
	Generation int64
	Bucket     int
	// EntityKey is the canonical entity key: the hash field.
	EntityKey string
	// Live reports whether Generation is the view's live generation.
	Live bool
	// Size is the size of the encoded row in bytes.
	Size int
}

// errStopScan ends a scan early once the limit is reached.
var errStopScan = errors.New("scan limit reached")

// Scan calls fn for each stored entity row that matches opts, walking the
// project's bucket keys with SCAN (never KEYS) on every node and each bucket
// with HSCAN, in no particular order. Rows may be visited twice, as SCAN
// allows. It stops at the first error fn returns and returns it as is; it
// returns larder.ErrUnavailable or ctx.Err() when Redis cannot be read.
func (s *Store) Scan(ctx context.Context, opts ScanOptions, fn func(KeyInfo) error) error {
	pattern := s.k.scanAll()
	if opts.View != "" {
		pattern = s.k.scanView(opts.View)
	}
	match := opts.Match
	if match == "" {
		match = "*"
	}
	liveIDs := map[string]int64{}
	seen := 0

	err := s.forEachNode(ctx, func(node redis.Cmdable) error {
		iter := node.ScanType(ctx, 0, pattern, scanCount, "hash").Iterator()
		for iter.Next(ctx) {
			key := iter.Val()
			view, gen, bucket, ok := s.k.parseData(key)
			if !ok {
				continue // metadata and other keys of the project
			}
			liveID, known := liveIDs[view]
			if !known {
				id, err := s.client.Get(ctx, s.k.live(view)).Int64()
				if err != nil && !errors.Is(err, redis.Nil) {
					return redisErr(ctx, "scan", err)
				}
				liveIDs[view], liveID = id, id
			}
			fields := node.HScan(ctx, key, 0, match, scanCount).Iterator()
			for fields.Next(ctx) {
				field := fields.Val()
				if !fields.Next(ctx) {
					break
				}
				info := KeyInfo{
					RedisKey: key, View: view, Generation: gen, Bucket: bucket,
					EntityKey: field, Live: gen == liveID, Size: len(fields.Val()),
				}
				if err := fn(info); err != nil {
					return err
				}
				seen++
				if opts.Limit > 0 && seen >= opts.Limit {
					return errStopScan
				}
			}
			if err := fields.Err(); err != nil {
				return redisErr(ctx, "scan "+key, err)
			}
		}
		if err := iter.Err(); err != nil {
			return redisErr(ctx, "scan", err)
		}
		return nil
	})
	if errors.Is(err, errStopScan) {
		return nil
	}
	return err
}

// forEachNode calls fn with each master of a cluster, one after the other,
// or once with the client itself.
func (s *Store) forEachNode(ctx context.Context, fn func(redis.Cmdable) error) error {
	cc, ok := s.client.(*redis.ClusterClient)
	if !ok {
		return fn(s.client)
	}
	var mu sync.Mutex
	var nodes []*redis.Client
	if err := cc.ForEachMaster(ctx, func(_ context.Context, c *redis.Client) error {
		mu.Lock()
		nodes = append(nodes, c)
		mu.Unlock()
		return nil
	}); err != nil {
		return redisErr(ctx, "list cluster nodes", err)
	}
	for _, n := range nodes {
		if err := fn(n); err != nil {
			return err
		}
	}
	return nil
}

// MemoryUsage returns the Redis memory held by the live generation of view
// (the MEMORY USAGE of its buckets, every element counted, plus its
// metadata) and the number of rows in it. It returns an error wrapping
// larder.ErrNoGeneration when the view was never published, and
// larder.ErrUnavailable or ctx.Err() when Redis cannot be read.
func (s *Store) MemoryUsage(ctx context.Context, view string) (bytes, rows int64, err error) {
	g, err := s.refresh(ctx, view)
	if err != nil {
		return 0, 0, err
	}
	if g.gen.ID == 0 {
		return 0, 0, fmt.Errorf("store: memory of %s: %w", view, larder.ErrNoGeneration)
	}
	keys := make([]string, 0, g.buckets+1)
	for b := range g.buckets {
		keys = append(keys, string(g.bucketKey(nil, b)))
	}
	keys = append(keys, s.k.meta(view, g.gen.ID))

	total, err := s.memoryUsage(ctx, keys, true)
	if err != nil && strings.Contains(strings.ToLower(err.Error()), "syntax") {
		// Servers such as miniredis take no SAMPLES argument.
		total, err = s.memoryUsage(ctx, keys, false)
	}
	if err != nil {
		return 0, 0, redisErr(ctx, "memory of "+view, err)
	}
	return total, g.gen.Rows, nil
}

func (s *Store) memoryUsage(ctx context.Context, keys []string, exact bool) (int64, error) {
	var total int64
	for len(keys) > 0 {
		chunk := keys[:min(len(keys), unlinkChunk)]
		keys = keys[len(chunk):]
		pipe := s.client.Pipeline()
		cmds := make([]*redis.IntCmd, len(chunk))
		for i, k := range chunk {
			if exact {
				cmds[i] = pipe.MemoryUsage(ctx, k, 0)
			} else {
				cmds[i] = pipe.MemoryUsage(ctx, k)
			}
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return 0, err
		}
		for _, c := range cmds {
			total += c.Val()
		}
	}
	return total, nil
}
