package store

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Watch keeps the Store's cached live generations current until ctx ends,
// then returns ctx.Err(). It subscribes to the project's publish channel and
// re-reads a view's live pointer on each message; it also re-reads every
// cached view after each (re)subscription and every
// Options.RefreshInterval, as a fallback for lost messages. While Redis is
// unreachable it retries with backoff and the cache keeps serving the
// generations it knows.
func (s *Store) Watch(ctx context.Context) error {
	ps := s.client.Subscribe(ctx, s.k.channel())
	defer ps.Close()
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() })
	defer stop()

	interval := s.opts.RefreshInterval
	lastRefresh := time.Now()
	backoff := 50 * time.Millisecond
	for {
		wait := interval - time.Since(lastRefresh)
		if wait <= 0 {
			s.refreshAll(ctx)
			lastRefresh = time.Now()
			wait = interval
		}
		msg, err := ps.ReceiveTimeout(ctx, wait)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			var nerr interface{ Timeout() bool }
			if errors.As(err, &nerr) && nerr.Timeout() {
				continue // time for the periodic refresh
			}
			s.log.Warn("watching publish notifications failed; retrying", "channel", s.k.channel(), "err", err)
			// On a cluster, the node of the channel may have failed over.
			s.reloadTopology(ctx)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, interval, 5*time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		switch m := msg.(type) {
		case *redis.Subscription:
			// Subscribed, or resubscribed after a reconnect: messages may
			// have been missed meanwhile.
			s.refreshAll(ctx)
			lastRefresh = time.Now()
		case *redis.Message:
			view, _, _ := strings.Cut(m.Payload, " ")
			if _, err := s.refresh(ctx, view); err != nil && ctx.Err() == nil {
				s.log.Warn("reading a published generation failed", "view", view, "err", err)
			}
		}
	}
}

// refreshAll re-reads the live generation of every cached view.
func (s *Store) refreshAll(ctx context.Context) {
	s.mu.RLock()
	views := make([]string, 0, len(s.live))
	for v := range s.live {
		views = append(views, v)
	}
	s.mu.RUnlock()
	for _, v := range views {
		if _, err := s.refresh(ctx, v); err != nil {
			if ctx.Err() != nil {
				return
			}
			s.log.Warn("refreshing the live generation failed; serving the cached one", "view", v, "err", err)
		}
	}
}
