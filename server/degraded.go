package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/larder-dev/larder"
)

// ErrModelUnavailable is wrapped by the error of a Model that cannot run at
// all, such as the stand-in for a ranker's model when ONNX Runtime cannot be
// loaded. Rank then answers in degraded mode, counted under the reason
// model_unavailable.
var ErrModelUnavailable = errors.New("model unavailable")

// The reason classes of degraded Rank responses, as the metrics label them.
const (
	reasonModelError       = "model_error"
	reasonModelTimeout     = "model_timeout"
	reasonModelUnavailable = "model_unavailable"
)

// modelTimeout returns how long one run of r's model may take.
func modelTimeout(r *larder.Ranker) time.Duration {
	if r.ModelTimeout > 0 {
		return r.ModelTimeout
	}
	return larder.DefaultModelTimeout
}

// scoreTimeout returns how long a Rank request may wait for the scores of
// m, r's model as the server holds it: the model timeout, plus, when m is a
// Batcher, the longest wait for a batch to start.
func scoreTimeout(r *larder.Ranker, m Model) time.Duration {
	d := modelTimeout(r)
	if b, ok := m.(*Batcher); ok {
		d += b.cfg.MaxDelay
	}
	return d
}

// modelTimeoutError is the error of a model run stopped by the ranker's
// model timeout while the request's own context was still alive.
type modelTimeoutError struct {
	after time.Duration
	err   error
}

func (e *modelTimeoutError) Error() string {
	return fmt.Sprintf("model timed out after %s", e.after)
}

func (e *modelTimeoutError) Unwrap() error { return e.err }

// scoreModel runs m on the n rows of x within timeout (see scoreTimeout).
// When the timeout, not ctx, stops the run, the error is a
// *modelTimeoutError.
func scoreModel(ctx context.Context, timeout time.Duration, m Model, x []float32, n int, out []float32) error {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= timeout {
		// The caller's deadline comes first: it alone bounds the run.
		return m.Score(ctx, x, n, out)
	}
	mctx, cancel := context.WithTimeout(ctx, timeout)
	err := m.Score(mctx, x, n, out)
	cancel()
	if err != nil && ctx.Err() == nil && !refused(err) && errors.Is(mctx.Err(), context.DeadlineExceeded) {
		return &modelTimeoutError{after: timeout, err: err}
	}
	return err
}

// degrade records a Rank response of ranker served without its model because
// of err, and returns the reason given to the caller and its class (the
// reason label of the metric).
func (s *Service) degrade(ctx context.Context, ranker string, err error) (reason, class string) {
	var timeout *modelTimeoutError
	switch {
	case errors.As(err, &timeout):
		reason, class = timeout.Error(), reasonModelTimeout
	case errors.Is(err, ErrModelUnavailable):
		reason, class = err.Error(), reasonModelUnavailable
	case errors.Is(err, larder.ErrUnavailable):
		reason, class = "model unavailable: "+err.Error(), reasonModelUnavailable
	default:
		reason, class = "model failed: "+err.Error(), reasonModelError
	}
	s.degraded.Add(1)
	s.metrics.rankDegraded(ranker, class)
	s.logger.WarnContext(ctx, "rank served without the model", "ranker", ranker, "reason", class, "err", err)
	return reason, class
}
