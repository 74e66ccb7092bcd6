package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/larder-dev/larder"
)

// Pinger is implemented by a FeatureStore that can tell whether its
// backend answers.
type Pinger interface {
	Ping(ctx context.Context) error
}

// Ready reports whether the service can answer requests: its store answers
// (when it can tell, Pinger), and at least one view has a live generation,
// read from the store as it is now (larder.FreshReader) rather than from a
// cache. It returns an error saying what is wrong otherwise.
func (s *Service) Ready(ctx context.Context) error {
	if p, ok := s.backend.(Pinger); ok {
		if err := p.Ping(ctx); err != nil {
			return fmt.Errorf("the online store does not answer: %w", err)
		}
	}
	views := s.serving().project.Views
	if len(views) == 0 {
		return nil
	}
	var last error
	for _, v := range views {
		var err error
		if fr, ok := s.backend.(larder.FreshReader); ok {
			_, err = fr.LiveFresh(ctx, v)
		} else {
			_, err = s.store.Live(ctx, v)
		}
		switch {
		case err == nil:
			return nil
		case errors.Is(err, larder.ErrNoGeneration):
			last = err
		default:
			return fmt.Errorf("view %s: %w", v.Name, err)
		}
	}
	return fmt.Errorf("no view has a live generation (materialize them first): %w", last)
}

// WatchHealth sets the serving status of every service of each GRPC from
// Ready, every interval, until ctx ends: NOT_SERVING while the store does
// not answer or no view has a live generation, SERVING again by itself
// when it does, so that load balancers stop and resume sending traffic.
// It logs each change. A GRPC whose Serve has begun draining is left
// alone.
func WatchHealth(ctx context.Context, svc *Service, interval time.Duration, grpcs ...*GRPC) {
	if interval <= 0 {
		interval = time.Second
	}
	var serving *bool
	check := func() {
		cctx, cancel := context.WithTimeout(ctx, interval)
		err := svc.Ready(cctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		ok := err == nil
		if serving != nil && *serving == ok {
			return
		}
		serving = &ok
		status := healthpb.HealthCheckResponse_SERVING
		if !ok {
			status = healthpb.HealthCheckResponse_NOT_SERVING
			svc.logger.Warn("health: not serving", "reason", err)
		} else {
			svc.logger.Info("health: serving")
		}
		for _, g := range grpcs {
			if g != nil {
				g.setStatus(status)
			}
		}
	}
	check()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			check()
		}
	}
}
