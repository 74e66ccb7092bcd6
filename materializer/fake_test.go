package materializer_test

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/larder-dev/larder"
)

// fakeStore is an in-memory larder.GenerationStore that isolates the
// materializer from Redis. It checks what a real store relies on: one Put
// per key, values typed as the view's features, no use after Publish or
// Abort.
type fakeStore struct {
	mu   sync.Mutex
	ids  int64
	live map[string]*fakeGen
	// begins, publishes and aborts count the calls.
	begins, publishes, aborts int
	// onPut, when set, runs before every Put with the number of rows already
	// put into that generation; its error fails the Put.
	onPut func(n int) error
}

type fakeGen struct {
	id   int64
	rows map[larder.Key]larder.Row
}

var _ larder.GenerationStore = (*fakeStore)(nil)

func newFakeStore() *fakeStore { return &fakeStore{live: make(map[string]*fakeGen)} }

func (s *fakeStore) Begin(ctx context.Context, v *larder.View, _ larder.BeginOptions) (larder.GenerationWriter, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ids++
	s.begins++
	return &fakeWriter{s: s, v: v, g: &fakeGen{id: s.ids, rows: make(map[larder.Key]larder.Row)}}, nil
}

// liveRows returns the rows of the live generation of view, and its id.
func (s *fakeStore) liveRows(view string) (map[larder.Key]larder.Row, int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.live[view]
	if g == nil {
		return nil, 0
	}
	return g.rows, g.id
}

func (s *fakeStore) counts() (begins, publishes, aborts int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.begins, s.publishes, s.aborts
}

type fakeWriter struct {
	s    *fakeStore
	v    *larder.View
	g    *fakeGen
	done bool
}

func (w *fakeWriter) ID() int64 { return w.g.id }

func (w *fakeWriter) Put(ctx context.Context, k larder.Key, row larder.Row) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if w.done {
		return errors.New("fake store: put after publish or abort")
	}
	if w.s.onPut != nil {
		if err := w.s.onPut(len(w.g.rows)); err != nil {
			return err
		}
	}
	if err := k.Check(w.v.EntityDef()); err != nil {
		return err
	}
	if _, dup := w.g.rows[k]; dup {
		return fmt.Errorf("fake store: key %v put twice", k)
	}
	if len(row.Values) != len(w.v.Features) {
		return fmt.Errorf("fake store: key %v: %d values for %d features", k, len(row.Values), len(w.v.Features))
	}
	for i, val := range row.Values {
		if !val.IsNull() && val.Type() != w.v.Features[i].Type {
			return fmt.Errorf("fake store: key %v: feature %s is %s, got a %s value", k, w.v.Features[i].Name, w.v.Features[i].Type, val.Type())
		}
	}
	w.g.rows[k] = larder.Row{EventTime: row.EventTime, Values: append([]larder.Value(nil), row.Values...)}
	return nil
}

func (w *fakeWriter) Publish(ctx context.Context) (larder.Generation, error) {
	if err := ctx.Err(); err != nil {
		return larder.Generation{}, err
	}
	if w.done {
		return larder.Generation{}, errors.New("fake store: publish after publish or abort")
	}
	w.done = true
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	w.s.live[w.v.Name] = w.g
	w.s.publishes++
	return larder.Generation{View: w.v.Name, ID: w.g.id, Rows: int64(len(w.g.rows)), Fingerprint: w.v.Fingerprint()}, nil
}

func (w *fakeWriter) Abort(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	w.done = true
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	w.s.aborts++
	return nil
}
