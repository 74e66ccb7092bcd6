package store_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/redistest"
	"github.com/larder-dev/larder/store"
)

// holdBig holds every pipeline of at least 8 commands until release is
// closed, and says on entered when one is held.
type holdBig struct {
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

func (h *holdBig) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (h *holdBig) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h *holdBig) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if len(cmds) >= 8 {
			h.once.Do(func() { close(h.entered) })
			<-h.release
		}
		return next(ctx, cmds)
	}
}

// TestSmallReadBesideBig checks that a small Read (one key) never waits
// behind the round trip of a big one (2,000 keys) in flight: it takes the
// second round trip.
func TestSmallReadBesideBig(t *testing.T) {
	ctx := context.Background()
	client := redistest.Start(t).Client()
	p := testProject(t)
	s := store.New(client, p.Name, store.Options{})
	at := time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC)
	wide := p.View("wide")
	publish(t, s, wide, 2000, func(id, gen int64) larder.Row { return wideRow(id, gen, at) })
	// The generation's metadata is read once, before the hook.
	if err := s.Read(ctx, []*larder.Lookup{{View: wide, Keys: []larder.Key{larder.Int64Key(1)}}}); err != nil {
		t.Fatal(err)
	}
	hook := &holdBig{entered: make(chan struct{}), release: make(chan struct{})}
	client.AddHook(hook)
	defer func() {
		select {
		case <-hook.release:
		default:
			close(hook.release)
		}
	}()

	big := make([]larder.Key, 2000)
	for i := range big {
		big[i] = larder.Int64Key(int64(i + 1))
	}
	bigDone := make(chan error, 1)
	go func() { bigDone <- s.Read(ctx, []*larder.Lookup{{View: wide, Keys: big}}) }()
	<-hook.entered

	small := &larder.Lookup{View: wide, Keys: []larder.Key{larder.Int64Key(7)}}
	smallDone := make(chan error, 1)
	go func() { smallDone <- s.Read(ctx, []*larder.Lookup{small}) }()
	select {
	case err := <-smallDone:
		if err != nil || !small.Found[0] {
			t.Fatalf("the small Read: %v, found %v", err, small.Found)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the small Read waits behind the big Read's round trip")
	}
	close(hook.release)
	if err := <-bigDone; err != nil {
		t.Fatal(err)
	}
}
