package server

import (
	"io"
	"sync/atomic"
)

// modelSlot holds the model a ranker serves with. swap replaces it in one
// atomic step: a request that took the old model finishes on it, and the old
// model is closed (when it is an io.Closer) once the last such request has
// released it.
type modelSlot struct {
	cur atomic.Pointer[modelLease]
}

// modelLease is one model and the count of its holders: one for the slot
// while it is current, plus one per request scoring with it.
type modelLease struct {
	Model
	refs atomic.Int64
}

func newModelSlot(m Model) *modelSlot {
	s := &modelSlot{}
	l := &modelLease{Model: m}
	l.refs.Store(1)
	s.cur.Store(l)
	return s
}

// acquire returns the current model; the caller must release it.
func (s *modelSlot) acquire() *modelLease {
	for {
		l := s.cur.Load()
		// A count of zero means the lease was retired between the load and
		// now: load the new one.
		if r := l.refs.Load(); r > 0 && l.refs.CompareAndSwap(r, r+1) {
			return l
		}
	}
}

// release gives the lease back, closing its model if it was the last holder
// of a retired lease.
func (l *modelLease) release() {
	if l.refs.Add(-1) == 0 {
		if c, ok := l.Model.(io.Closer); ok {
			_ = c.Close()
		}
	}
}

// swap makes m the current model. The old one is closed when the requests
// scoring with it have finished.
func (s *modelSlot) swap(m Model) {
	l := &modelLease{Model: m}
	l.refs.Store(1)
	s.cur.Swap(l).release()
}

// current returns the current model without holding it, for reading its
// version.
func (s *modelSlot) current() Model { return s.cur.Load().Model }
