package ingest

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/redis/go-redis/v9"

	"github.com/larder-dev/larder"
)

// pushed is what became of a batch of events: the rows written, those left
// out as older than the stored row, and the events that can never apply
// (by their index in the batch) with the reason.
type pushed struct {
	written, older int64
	dead           []deadEvent
}

type deadEvent struct {
	i      int
	reason string
}

// pushEvents maps the n events of a batch to rows with row, pushes those
// that map in one call, and says what became of each. The error is the
// push's: then nothing is known to be written. For a streaming aggregate
// view, the rows are events added to their tiles (larder.TileStore), each
// once by its id in the stream.
func pushEvents(ctx context.Context, st larder.PushStore, s *larder.Stream, v *larder.View, n int, row func(i int) (larder.PushRow, error), id func(i int) string) (pushed, error) {
	var p pushed
	rows := make([]larder.PushRow, 0, n)
	idx := make([]int, 0, n) // the event of each row
	for i := range n {
		r, err := row(i)
		if err != nil {
			p.dead = append(p.dead, deadEvent{i, err.Error()})
			continue
		}
		rows, idx = append(rows, r), append(idx, i)
	}
	if len(rows) == 0 {
		return p, nil
	}
	var out []larder.PushOutcome
	var err error
	if v.Kind == larder.KindAggregate {
		ts, ok := st.(larder.TileStore)
		if !ok {
			return p, fmt.Errorf("stream %s feeds aggregate view %s, and the store %T keeps no tiles (larder.TileStore)", s.Name, s.View, st)
		}
		events := make([]larder.TileEvent, len(rows))
		for j, r := range rows {
			events[j] = larder.TileEvent{Key: r.Key, ID: id(idx[j]), Time: r.Row.EventTime, Values: r.Row.Values}
		}
		out, err = ts.AddEvents(ctx, v, events)
	} else {
		out, err = st.Push(ctx, v, rows)
	}
	if err != nil {
		return p, fmt.Errorf("push %d events of %s into %s: %w", len(rows), s.Source(), s.View, err)
	}
	for j, o := range out {
		switch o.Result {
		case larder.PushWritten:
			p.written++
		case larder.PushOlder:
			p.older++
		default:
			p.dead = append(p.dead, deadEvent{idx[j], o.Reason})
		}
	}
	return p, nil
}

// sendDead appends the dead events of a batch to the stream's dead-letter
// stream, each entry's fields made by fields, and logs it.
func sendDead(ctx context.Context, client redis.UniversalClient, s *larder.Stream, log *slog.Logger, dead []deadEvent, fields func(deadEvent) []any) error {
	if len(dead) == 0 {
		return nil
	}
	pipe := client.Pipeline()
	for _, d := range dead {
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: s.DeadLetter, Values: fields(d)})
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("send %d events to the dead-letter stream %s: %w", len(dead), s.DeadLetter, err)
	}
	log.Warn("events that cannot apply sent to the dead-letter stream", "stream", s.Name,
		"dead_letter", s.DeadLetter, "events", len(dead), "first_reason", dead[0].reason)
	return nil
}

// tally counts what a consumer applied since it started.
type tally struct{ written, older, dead atomic.Int64 }

func (t *tally) counts() Counts {
	return Counts{Written: t.written.Load(), Older: t.older.Load(), Dead: t.dead.Load()}
}

// add counts a batch, and tells applied of it when set.
func (t *tally) add(p pushed, applied func(Counts)) {
	n := Counts{Written: p.written, Older: p.older, Dead: int64(len(p.dead))}
	t.written.Add(n.Written)
	t.older.Add(n.Older)
	t.dead.Add(n.Dead)
	if applied != nil {
		applied(n)
	}
}
