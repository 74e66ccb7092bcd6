package store

import (
	"context"
	"fmt"

	"github.com/larder-dev/larder"
	"github.com/redis/go-redis/v9"
)

var _ larder.KeyLister = (*Store)(nil)

// keysWindow is the number of buckets Keys scans per pipelined round trip.
const keysWindow = 64

// bucketScan is the HSCAN state of one bucket during Keys.
type bucketScan struct {
	key    string
	cursor uint64
	// seen holds the fields given so far when the bucket takes more than
	// one HSCAN call, which may return a field twice.
	seen map[string]struct{}
}

// Keys calls fn with the keys of the entities in generation gen of v (the
// live one when gen is 0),
// in batches of up to a few thousand, each key once, in no particular order.
// It walks the generation's buckets (known from its metadata, never by
// SCAN) with HSCAN, pipelining the buckets keysWindow at a time, so a
// generation of n rows costs about n / 6400 round trips. The generation is
// the one Read would read (the Store's cached live generation). fn must not
// keep the slice after it returns.
//
// Keys stops at the first error fn returns and returns it as is. It returns
// an error wrapping larder.ErrNoGeneration when v was never published,
// ErrCorruptRow when a stored field is not a key of v's entity, and
// larder.ErrUnavailable or ctx.Err() when Redis cannot be read.
func (s *Store) Keys(ctx context.Context, v *larder.View, gen int64, fn func([]larder.Key) error) error {
	e := v.EntityDef()
	if e == nil {
		return fmt.Errorf("store: keys of %s: the view has no entity: call Project.Validate first", v.Name)
	}
	var g *liveGen
	var err error
	if gen != 0 {
		g, err = s.pinnedFor(ctx, v.Name, gen)
	} else {
		g, err = s.liveFor(ctx, v.Name)
	}
	if err != nil {
		return err
	}
	var (
		keys   []larder.Key
		active []*bucketScan
		cmds   []*redis.ScanCmd
	)
	for lo := uint32(0); lo < g.buckets; lo += keysWindow {
		active = active[:0]
		for b := lo; b < min(lo+keysWindow, g.buckets); b++ {
			active = append(active, &bucketScan{key: string(g.bucketKey(nil, b))})
		}
		for len(active) > 0 {
			pipe := s.client.Pipeline()
			cmds = cmds[:0]
			for _, sc := range active {
				cmds = append(cmds, pipe.HScan(ctx, sc.key, sc.cursor, "", scanCount))
			}
			if _, err := pipe.Exec(ctx); err != nil {
				return redisErr(ctx, "keys of "+v.Name, err)
			}
			keys = keys[:0]
			next := active[:0]
			for i, sc := range active {
				fields, cursor := cmds[i].Val()
				if cursor != 0 && sc.seen == nil {
					sc.seen = make(map[string]struct{})
				}
				for j := 0; j+1 < len(fields); j += 2 { // field, value, ...
					f := fields[j]
					if sc.seen != nil {
						if _, dup := sc.seen[f]; dup {
							continue
						}
						sc.seen[f] = struct{}{}
					}
					k, err := larder.ParseKey(e.KeyType, f)
					if err != nil {
						return fmt.Errorf("store: keys of %s generation %d: field %q of %s is not a %s key of entity %s: %w",
							v.Name, g.gen.ID, f, sc.key, e.KeyType, e.Name, ErrCorruptRow)
					}
					keys = append(keys, k)
				}
				if cursor != 0 {
					sc.cursor = cursor
					next = append(next, sc)
				}
			}
			active = next
			if len(keys) > 0 {
				if err := fn(keys); err != nil {
					return err
				}
			}
		}
	}
	return nil
}
