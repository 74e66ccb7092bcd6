package server_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/larder-dev/larder"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
	"github.com/larder-dev/larder/server"
	"github.com/larder-dev/larder/store"
)

// genRow is the row of a user in a generation numbered gen: every value
// encodes gen, so that a reader can tell which generation each value came
// from.
func genRow(v *larder.View, gen int64, eventTime time.Time) larder.Row {
	vals := make([]larder.Value, len(v.Features))
	for i, f := range v.Features {
		switch f.Type {
		case larder.TypeInt64:
			vals[i] = larder.Int64Value(gen)
		case larder.TypeFloat64:
			vals[i] = larder.Float64Value(float64(gen) + 0.5)
		case larder.TypeFloat32:
			vals[i] = larder.Float32Value(float32(gen) + 0.25)
		case larder.TypeBool:
			vals[i] = larder.BoolValue(gen%2 == 0)
		case larder.TypeString:
			vals[i] = larder.StringValue("g" + strconv.FormatInt(gen, 10))
		case larder.TypeBytes:
			vals[i] = larder.BytesValue([]byte(strconv.FormatInt(gen, 10)))
		case larder.TypeFloat32Vector:
			vals[i] = larder.Float32VectorValue([]float32{float32(gen), -float32(gen)})
		}
	}
	return larder.Row{EventTime: eventTime, Values: vals}
}

// genOf returns the generation a value encodes (see genRow), or an error
// when it encodes none.
func genOf(v *larderv1.Value) (int64, error) {
	switch k := v.GetKind().(type) {
	case *larderv1.Value_Int64Value:
		return k.Int64Value, nil
	case *larderv1.Value_Float64Value:
		return int64(k.Float64Value - 0.5), nil
	case *larderv1.Value_Float32Value:
		return int64(k.Float32Value - 0.25), nil
	case *larderv1.Value_StringValue:
		return strconv.ParseInt(k.StringValue[1:], 10, 64)
	case *larderv1.Value_BytesValue:
		return strconv.ParseInt(string(k.BytesValue), 10, 64)
	case *larderv1.Value_Float32VectorValue:
		if vs := k.Float32VectorValue.GetValues(); len(vs) == 2 && vs[0] == -vs[1] {
			return int64(vs[0]), nil
		}
	}
	return 0, fmt.Errorf("value %v encodes no generation", v)
}

// TestAtomicGenerations publishes bursts of 20 generations of two views back
// to back from one store while a reader calls GetFeatures through a server on
// another store, kept current by Watch. Every response must have every row,
// and every value of a view must come from the one generation the response
// reports for it.
func TestAtomicGenerations(t *testing.T) {
	const (
		users       = 50
		generations = 20 // per burst
		maxBursts   = 10
	)
	p := testProject(t, nil)
	writer, rs := newStore(t, p)
	reader := store.New(rs.Client(), p.Name, store.Options{})
	views := []*larder.View{p.View("user_profile"), p.View("user_stats")}
	ctx := context.Background()

	write := func() {
		t.Helper()
		for _, v := range views {
			w, err := writer.BeginSized(ctx, v, users)
			if err != nil {
				t.Fatal(err)
			}
			now := time.Now()
			for u := int64(1); u <= users; u++ {
				if err := w.Put(ctx, larder.Int64Key(u), genRow(v, w.ID(), now)); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := w.Publish(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	write() // the reader starts on generation 1

	watchCtx, stopWatch := context.WithCancel(ctx)
	watched := make(chan error, 1)
	go func() { watched <- reader.Watch(watchCtx) }()
	t.Cleanup(func() {
		stopWatch()
		<-watched
	})
	srv := serve(t, server.Config{Project: p, Store: reader, Models: map[string]server.Model{"reco": &blockingModel{}}}, 5*time.Second)

	req := &larderv1.GetFeaturesRequest{Keys: make([]*larderv1.EntityKey, users), Features: []string{"user_profile:*", "user_stats:*"}}
	for i := range req.Keys {
		req.Keys[i] = intKey(int64(i + 1))
	}
	// check returns the generation of each view in resp after checking that
	// every value agrees with it.
	check := func(resp *larderv1.GetFeaturesResponse) (map[string]int64, error) {
		gens := map[string]int64{}
		for _, g := range resp.GetGenerations() {
			gens[g.GetView()] = g.GetGeneration()
		}
		if len(gens) != 2 {
			return nil, fmt.Errorf("generations %v, want one per view", resp.GetGenerations())
		}
		rows := rowsOf(resp)
		if len(rows) != users {
			return nil, fmt.Errorf("%d rows, want %d", len(rows), users)
		}
		for i, row := range rows {
			for j, fv := range row {
				col := resp.GetColumns()[j].GetName()
				if fv.status != present {
					return nil, fmt.Errorf("user %d %s: status %s, want present", i+1, col, fv.status)
				}
				view, _, _ := larder.SplitRef(col)
				if b, ok := fv.value.GetKind().(*larderv1.Value_BoolValue); ok {
					if b.BoolValue != (gens[view]%2 == 0) {
						return nil, fmt.Errorf("user %d %s = %v, not generation %d's", i+1, col, b.BoolValue, gens[view])
					}
					continue
				}
				g, err := genOf(fv.value)
				if err != nil {
					return nil, fmt.Errorf("user %d %s: %w", i+1, col, err)
				}
				if g != gens[view] {
					return nil, fmt.Errorf("user %d %s holds generation %d, but the response reports generation %d of %s", i+1, col, g, gens[view], view)
				}
			}
		}
		return gens, nil
	}

	var (
		wg        sync.WaitGroup
		done      = make(chan struct{})
		responses atomic.Int64
		seenMu    sync.Mutex
		seen      = map[int64]bool{} // user_profile generations seen
		readErr   error
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			resp, err := srv.client.GetFeatures(ctx, req)
			if err == nil {
				var gens map[string]int64
				if gens, err = check(resp); err == nil {
					responses.Add(1)
					seenMu.Lock()
					seen[gens["user_profile"]] = true
					seenMu.Unlock()
					continue
				}
			}
			readErr = err
			return
		}
	}()
	// Bursts of back-to-back generations, until the reader has overlapped
	// enough of them (a slow machine, or -race, reads fewer per burst).
	published := 0
	for burst := 0; burst < maxBursts; burst++ {
		for range generations {
			write()
		}
		published += generations
		seenMu.Lock()
		enough := responses.Load() >= 2*generations && len(seen) >= generations/2
		seenMu.Unlock()
		if enough {
			break
		}
	}
	last, err := writer.Live(ctx, views[0])
	if err != nil {
		t.Fatal(err)
	}
	// The reader follows the last publish through Watch.
	waitUntil(t, 5*time.Second, "the server to serve the last generation", func() bool {
		resp, err := srv.client.GetFeatures(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		gens, err := check(resp)
		if err != nil {
			t.Fatal(err)
		}
		return gens["user_profile"] == last.ID
	})
	close(done)
	wg.Wait()
	if readErr != nil {
		t.Fatalf("after %d good responses: %v", responses.Load(), readErr)
	}
	if n := responses.Load(); n < 2*generations || len(seen) < generations/2 {
		t.Fatalf("the reader made %d calls and saw %d generations; the test proves little", n, len(seen))
	}
	t.Logf("%d responses, %d of %d generations seen", responses.Load(), len(seen), published+1)
}
