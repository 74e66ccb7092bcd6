package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/larder-dev/larder"
)

// load is what protects a server from its requests as a whole, whatever
// each asks for: at most max FeatureService and IngestService requests at
// once, the others refused at once (shed) with shedErr; and a deadline for
// every request, so that a stalled store cannot hold a request, and its
// slot, for ever.
type load struct {
	// slots holds a token per FeatureService or IngestService request in
	// progress. It belongs to the Service, so that every listener of one
	// process shares it.
	slots   chan struct{}
	shedErr error
	// def bounds a request whose client set no deadline; limit bounds the
	// others.
	def, limit time.Duration
}

// featureMethods and ingestMethods (see auth.go) are the prefixes of the
// methods that load sheds: the product's traffic, reads and pushes. Health
// checks and the operators' services (AdminService, JobService) are never
// shed, so that a busy server can still be watched, reloaded and drained.
const featureMethods = "/larder.v1.FeatureService/"

func newLoad(s larder.Server) *load {
	n := cmp.Or(s.MaxConcurrentRequests, larder.DefaultMaxConcurrentRequests)
	return &load{
		slots: make(chan struct{}, n),
		shedErr: toStatus(fmt.Errorf("server busy: %d requests are in progress, the most it takes at once (server.max_concurrent_requests): %w",
			n, larder.ErrOverloaded)),
		def:   cmp.Or(s.DefaultDeadline, larder.DefaultDeadline),
		limit: cmp.Or(s.MaxDeadline, larder.DefaultMaxDeadline),
	}
}

// sheds reports whether requests of method take a slot.
func sheds(method string) bool {
	return strings.HasPrefix(method, featureMethods) || strings.HasPrefix(method, ingestMethods)
}

// acquire takes a slot, and reports false, taking none, when every slot is
// taken: the request is to be shed.
func (l *load) acquire() bool {
	select {
	case l.slots <- struct{}{}:
		return true
	default:
		return false
	}
}

func (l *load) release() { <-l.slots }

// deadline returns ctx with the server's deadline when the client set none
// or a later one, and the setting that bounds it ("" when ctx is returned
// as it is); cancel is nil then.
func (l *load) deadline(ctx context.Context) (_ context.Context, cancel context.CancelFunc, setting string) {
	d, ok := ctx.Deadline()
	switch {
	case !ok:
		ctx, cancel = context.WithTimeout(ctx, l.def)
		return ctx, cancel, "server.default_deadline, " + larder.DurationText(l.def) + ", for a request that sets none"
	case time.Until(d) > l.limit:
		ctx, cancel = context.WithTimeout(ctx, l.limit)
		return ctx, cancel, "server.max_deadline, " + larder.DurationText(l.limit) + ", shorter than the request's own"
	}
	return ctx, nil, ""
}

// passed returns err as DEADLINE_EXCEEDED when ctx, whose deadline the
// server set (see deadline), has passed: the store's or the model's error
// when they were cut short (an i/o timeout, a cancelled read) says less
// than that the server's deadline passed. The deadline is read from the
// clock too, not only from ctx.Err(): a read that shared a round trip
// with others may fail on the trip's deadline, the same instant as ctx's,
// a moment before ctx itself says it is done.
func passed(ctx context.Context, err error, setting string) error {
	if err == nil || setting == "" {
		return err
	}
	if d, ok := ctx.Deadline(); !errors.Is(ctx.Err(), context.DeadlineExceeded) && (!ok || time.Now().Before(d)) {
		return err
	}
	return status.Error(codes.DeadlineExceeded, "the server's deadline passed ("+setting+"): "+status.Convert(err).Message())
}
