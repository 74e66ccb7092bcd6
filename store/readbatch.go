package store

import (
	"context"
	"sync"
	"time"

	"github.com/larder-dev/larder"
	"github.com/redis/go-redis/v9"
)

// maxReadTrips is how many read round trips a Store keeps in flight at once.
// A Read that finds this many in flight queues its commands, and the next
// round trip carries every queued Read in one pipeline: under concurrency,
// many requests share one write and one read on the socket, on both sides,
// instead of each paying for its own. A Read that finds fewer in flight (as
// at low load) starts its round trip at once, so batching never adds
// latency to a lone request.
//
// A small Read (fewer than bigRead commands, such as a GetFeatures of a
// few keys) starts a round trip only when no other trip of small Reads is
// in flight, and otherwise queues: the Reads of the many small requests of
// a busy server then share round trips instead of each taking the second
// one alone. A big Read (a Rank's, a GetFeatures of many keys) may start
// the second, so that it does not wait behind another, and a small Read
// never waits behind a big one.
const maxReadTrips = 2

// bigRead is the number of commands from which a Read may start the second
// round trip in flight.
const bigRead = 8

// readBatcher coalesces the round trips of concurrent Reads. Its zero value
// is ready to use.
type readBatcher struct {
	mu      sync.Mutex
	running int         // round trips in flight
	small   int         // of them, those of small Reads: one's own, or the queued ones
	queue   []*readCall // Reads waiting for the next round trip
	spare   []*readCall // an emptied queue, kept for its capacity
}

// readCall is the Redis work of one Read, with the buffers that build it.
// Calls are pooled: a call goes back to the pool only once no round trip
// can touch its commands any more.
type readCall struct {
	ctx  context.Context
	done chan struct{} // receives once the call's commands have run
	cmds []redis.Cmder
	args []any
	// fields are the canonical entity keys, the hash fields to read: slices
	// of one string built from buf, ending at ends; buckets are their
	// buckets.
	fields  []string
	buf     []byte
	ends    []int
	buckets []uint32
	// order sorts one lookup's keys by bucket; key i's reply is command
	// slot[i], and element pos[i] of it for an HMGET (-1 for an HGET).
	order     []int32
	slot, pos []int32
	// scratch and nulls decode one row for a NumberRead.
	scratch []float32
	nulls   []bool
	// checks[li] is the command that reads lookup li's generation metadata.
	checks []int32
}

var readCalls = sync.Pool{New: func() any { return &readCall{done: make(chan struct{}, 1)} }}

func getReadCall(ctx context.Context) *readCall {
	c := readCalls.Get().(*readCall)
	c.ctx = ctx
	return c
}

// put returns c to the pool, dropping what it references so that pooled
// calls keep no replies or contexts alive.
func (c *readCall) put() {
	c.ctx = nil
	clear(c.cmds)
	c.cmds = c.cmds[:0]
	clear(c.args)
	c.args = c.args[:0]
	clear(c.fields)
	c.fields = c.fields[:0]
	c.buf = c.buf[:0]
	readCalls.Put(c)
}

// roundTrip runs the commands of c, alone or together with those of other
// concurrent Reads. It returns ctx.Err() when ctx ends before they have
// run; the commands may then still run, so c must not be reused. Otherwise
// it returns nil, and each command holds its own reply or error.
func (s *Store) roundTrip(ctx context.Context, c *readCall) error {
	b := &s.reads
	big := len(c.cmds) >= bigRead
	b.mu.Lock()
	if b.running == 0 || b.running < maxReadTrips && (big || b.small == 0) {
		b.running++
		if !big {
			b.small++
		}
		b.mu.Unlock()
		s.exec(ctx, c.cmds)
		s.tripDone(!big)
		return nil
	}
	b.queue = append(b.queue, c)
	b.mu.Unlock()
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// tripDone ends a round trip, of a small Read or not: its slot goes to the
// queued Reads, if any, whose trips count as small.
func (s *Store) tripDone(small bool) {
	b := &s.reads
	b.mu.Lock()
	if len(b.queue) == 0 {
		b.running--
		if small {
			b.small--
		}
		b.mu.Unlock()
		return
	}
	if !small {
		b.small++
	}
	batch := b.queue
	b.queue, b.spare = b.spare[:0], nil
	b.mu.Unlock()
	go s.runQueued(batch)
}

// runQueued runs batches of queued Reads, one round trip each, until the
// queue is empty.
func (s *Store) runQueued(batch []*readCall) {
	b := &s.reads
	var t trip
	for {
		t.build(batch)
		ctx, cancel := batchContext(batch)
		s.exec(ctx, t.cmds)
		cancel()
		t.share()
		for i, c := range batch {
			c.done <- struct{}{}
			batch[i] = nil
		}
		t.clear()

		b.mu.Lock()
		if len(b.queue) == 0 {
			b.running--
			b.small--
			if b.spare == nil {
				b.spare = batch[:0]
			}
			b.mu.Unlock()
			return
		}
		next := b.queue
		b.queue = batch[:0]
		b.mu.Unlock()
		batch = next
	}
}

// trip is the pipeline of a round trip shared by queued Reads. The Reads
// of one view's generation all check its metadata (see readCall.build):
// the trip sends that check once, after every Read's rows, and each Read
// finds the one reply in its own command. A check that comes later in the
// pipeline than a Read's rows is as good as its own: it still follows
// them.
type trip struct {
	cmds   []redis.Cmder
	checks []*redis.SliceCmd // the checks sent, one per metadata key
	dups   []dupCheck
}

// dupCheck is a Read's check that the trip does not send: it takes the
// reply of sent, the check of the same metadata key.
type dupCheck struct{ cmd, sent *redis.SliceCmd }

// build makes the pipeline of batch's Reads.
func (t *trip) build(batch []*readCall) {
	for _, c := range batch {
		next := 0 // the next of c.checks, which are in command order
		for j, cmd := range c.cmds {
			if next < len(c.checks) && int(c.checks[next]) == j {
				next++
				t.check(cmd.(*redis.SliceCmd))
				continue
			}
			t.cmds = append(t.cmds, cmd)
		}
	}
	for _, c := range t.checks {
		t.cmds = append(t.cmds, c)
	}
}

// check adds cmd, a check of a generation's metadata, to the trip, unless
// the trip already sends a check of the same key.
func (t *trip) check(cmd *redis.SliceCmd) {
	key := cmd.Args()[1]
	for _, sent := range t.checks {
		if sent.Args()[1] == key {
			t.dups = append(t.dups, dupCheck{cmd: cmd, sent: sent})
			return
		}
	}
	t.checks = append(t.checks, cmd)
}

// share gives the checks the trip did not send the replies of those it
// sent.
func (t *trip) share() {
	for _, d := range t.dups {
		d.cmd.SetVal(d.sent.Val())
		d.cmd.SetErr(d.sent.Err())
	}
}

// clear empties t for the next trip, keeping its capacity.
func (t *trip) clear() {
	clear(t.cmds)
	clear(t.checks)
	clear(t.dups)
	t.cmds, t.checks, t.dups = t.cmds[:0], t.checks[:0], t.dups[:0]
}

// batchContext returns the context of a shared round trip: no Read's
// cancellation ends it (each Read stops waiting on its own), and it ends at
// the latest of the Reads' deadlines, or never when one of them has none.
func batchContext(batch []*readCall) (context.Context, context.CancelFunc) {
	var latest time.Time
	for _, c := range batch {
		d, ok := c.ctx.Deadline()
		if !ok {
			return context.WithoutCancel(batch[0].ctx), func() {}
		}
		if d.After(latest) {
			latest = d
		}
	}
	return context.WithDeadline(context.WithoutCancel(batch[0].ctx), latest)
}

// exec sends cmds in one pipeline. Errors are left on the commands
// (redis.Nil, a missing field, is one).
func (s *Store) exec(ctx context.Context, cmds []redis.Cmder) {
	pipe := s.client.Pipeline()
	_ = pipe.BatchProcess(ctx, cmds...)
	_, _ = pipe.Exec(ctx)
}

// reply returns the stored row of key i of c: found false when the field
// does not exist, or an error.
func (c *readCall) reply(ctx context.Context, i int, view *larder.View) (string, bool, error) {
	var (
		val string
		err error
	)
	if p := c.pos[i]; p < 0 {
		val, err = c.cmds[c.slot[i]].(*redis.StringCmd).Result()
		if err == redis.Nil { //nolint:errorlint // go-redis returns redis.Nil itself
			return "", false, nil
		}
	} else {
		var vals []string
		vals, err = c.cmds[c.slot[i]].(*redis.StringSliceCmd).Result()
		if err == nil {
			// HMGET answers a missing field with nil, which go-redis reads
			// as "": a stored row is never empty (it starts with the codec
			// version).
			if val = vals[p]; val == "" {
				return "", false, nil
			}
		}
	}
	if err != nil {
		return "", false, redisErr(ctx, "read "+view.Name, err)
	}
	return val, true, nil
}
