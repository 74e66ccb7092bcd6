package materializer

import (
	"context"
	"fmt"
	"time"

	"github.com/larder-dev/larder"
)

// progressEvery is how many entities are written between progress reports
// and context checks.
const progressEvery = 4096

// abortTimeout bounds the best-effort Abort after a failure, which runs even
// when the run's context has ended.
const abortTimeout = 10 * time.Second

// emitter is a computation whose result is ready to be written.
type emitter interface {
	emit(put func(larder.Key, larder.Row) error) error
}

// write puts every row of comp into a new generation of v and publishes it.
// It returns the published generation and the number of rows put. On any
// error, including ctx ending, it aborts the generation and returns the error.
func (m *Materializer) write(ctx context.Context, v *larder.View, comp emitter, prog Progress) (larder.Generation, int64, error) {
	w, err := m.gs.Begin(ctx, v, prog.EntitiesTotal)
	if err != nil {
		return larder.Generation{}, 0, fmt.Errorf("begin generation: %w", err)
	}
	var n int64
	err = comp.emit(func(k larder.Key, row larder.Row) error {
		if err := w.Put(ctx, k, row); err != nil {
			return fmt.Errorf("write generation %d: %w", w.ID(), err)
		}
		n++
		if n%progressEvery == 0 {
			prog.EntitiesWritten = n
			m.progress(prog)
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		m.abort(ctx, w, err)
		return larder.Generation{}, n, err
	}
	prog.EntitiesWritten = n
	m.progress(prog)
	gen, err := w.Publish(ctx)
	if err != nil {
		err = fmt.Errorf("publish generation %d: %w", w.ID(), err)
		m.abort(ctx, w, err)
		return larder.Generation{}, n, err
	}
	return gen, n, nil
}

// abort discards w after cause, on a context that outlives ctx's
// cancellation, and logs what it could not clean up.
func (m *Materializer) abort(ctx context.Context, w larder.GenerationWriter, cause error) {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
	defer cancel()
	if err := w.Abort(actx); err != nil {
		m.log.Warn("could not abort generation; it stays invisible and expires",
			"generation", w.ID(), "cause", cause, "err", err)
		return
	}
	m.log.Info("aborted generation", "generation", w.ID(), "cause", cause)
}
