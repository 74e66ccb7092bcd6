package server_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/models"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
	"github.com/larder-dev/larder/server"
)

// countingModel records the rows of every run of the model it wraps and,
// when gate is not nil, holds each run until gate yields. Hold and Release
// set and open the gate: while a run is held, the model is busy, so that
// the calls that come meanwhile wait for a run.
type countingModel struct {
	server.Model

	mu     sync.Mutex
	gate   chan struct{}
	runs   []int
	closed bool
}

func (m *countingModel) Score(ctx context.Context, x []float32, n int, out []float32) error {
	m.mu.Lock()
	m.runs = append(m.runs, n)
	gate := m.gate
	m.mu.Unlock()
	if gate != nil {
		<-gate
	}
	return m.Model.Score(ctx, x, n, out)
}

// Hold makes the runs that start from now on wait until Release.
func (m *countingModel) Hold() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.gate == nil {
		m.gate = make(chan struct{})
	}
}

// Release lets the held runs, and later ones, go on.
func (m *countingModel) Release() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.gate != nil {
		close(m.gate)
		m.gate = nil
	}
}

func (m *countingModel) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	return nil
}

// Runs returns the row counts of the runs so far.
func (m *countingModel) Runs() []int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.runs)
}

const batchFeatures = 6

// mlpModel returns a random MLP of batchFeatures inputs, loaded in ONNX
// Runtime.
func mlpModel(tb testing.TB, hidden ...int) *models.Model {
	tb.Helper()
	net, err := models.NewRandomMLP(batchFeatures, hidden, 3)
	if err != nil {
		tb.Fatal(err)
	}
	r := &larder.Ranker{Name: "mlp", ModelInput: larder.DefaultModelInput, ModelOutput: larder.DefaultModelOutput,
		Inputs: make([]larder.RankerInput, batchFeatures)}
	return loadNet(tb, net, r)
}

func newBatcher(tb testing.TB, inner server.Model, cfg larder.Batching, runs int) *server.Batcher {
	tb.Helper()
	b, err := server.NewBatcher(inner, batchFeatures, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	server.SetBatcherRuns(b, runs)
	tb.Cleanup(func() { b.Close() })
	return b
}

// randomRows returns n rows of distinct random inputs.
func randomRows(rng *rand.Rand, n int) []float32 {
	x := make([]float32, n*batchFeatures)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	return x
}

// sameScores fails tb unless got and want agree to float32 rounding.
func sameScores(tb testing.TB, what string, got, want []float32) {
	tb.Helper()
	for i := range want {
		if math.Abs(float64(got[i]-want[i])) > 1e-6 {
			tb.Errorf("%s: score %d = %v, want %v (as scored alone)", what, i, got[i], want[i])
			return
		}
	}
}

// TestBatcherJoins checks that a call to an idle model runs at once, that
// the calls that come while a run is in flight are joined into runs of at
// most max_rows rows, that a call larger than max_rows runs alone, and that
// each caller gets exactly the scores its rows get when scored alone.
func TestBatcherJoins(t *testing.T) {
	inner := mlpModel(t, 16)
	counted := &countingModel{Model: inner}
	counted.Hold()
	defer counted.Release()
	// A max_delay of a minute: no run here waits for it.
	b := newBatcher(t, counted, larder.Batching{MaxDelay: time.Minute, MaxRows: 40, MaxQueue: 64}, 1)

	rng := rand.New(rand.NewPCG(1, 2))
	sizes := []int{10, 7, 13, 1, 9, 45, 10, 3, 12, 8, 5, 2} // 45 > max_rows
	xs := make([][]float32, len(sizes))
	want := make([][]float32, len(sizes))
	for i, n := range sizes {
		xs[i] = randomRows(rng, n)
		want[i] = make([]float32, n)
		if err := inner.Score(context.Background(), xs[i], n, want[i]); err != nil {
			t.Fatal(err)
		}
	}

	got := make([][]float32, len(sizes))
	errs := make([]error, len(sizes))
	var wg sync.WaitGroup
	// The first call finds the model idle and runs at once, without waiting
	// for max_delay; its run holds the model while the others come and wait.
	got[0] = make([]float32, sizes[0])
	wg.Go(func() { errs[0] = b.Score(context.Background(), xs[0], sizes[0], got[0]) })
	waitUntil(t, 5*time.Second, "the first call runs at once", func() bool { return len(counted.Runs()) == 1 })
	for i, n := range sizes[1:] {
		i++
		got[i] = make([]float32, n)
		wg.Go(func() { errs[i] = b.Score(context.Background(), xs[i], n, got[i]) })
	}
	waitUntil(t, 5*time.Second, "11 calls wait", func() bool { return b.Waiting() == len(sizes)-1 })
	counted.Release()
	wg.Wait()
	for i := range sizes {
		if errs[i] != nil {
			t.Fatalf("call %d: %v", i, errs[i])
		}
		sameScores(t, fmt.Sprintf("call %d (%d rows)", i, sizes[i]), got[i], want[i])
	}

	runs := counted.Runs()
	if runs[0] != sizes[0] {
		t.Errorf("runs %v: the first run is not the first call's %d rows alone", runs, sizes[0])
	}
	total := 0
	for _, n := range runs {
		total += n
		if n > 40 && n != 45 {
			t.Errorf("a run of %d rows: more than max_rows 40, and not the one call larger than it", n)
		}
	}
	if total != 125 {
		t.Errorf("runs %v score %d rows, want the 125 of the calls", runs, total)
	}
	// The first call alone, the call of 45 alone, and the other 70 rows in
	// runs of at most 40 rows each (in the order the calls came, so up to 4
	// of them): 4 to 6 runs, far fewer than the 12 calls.
	if len(runs) < 4 || len(runs) > 6 {
		t.Errorf("12 calls ran in %d runs %v, want the 11 that waited joined: 4 to 6 runs", len(runs), runs)
	}
	if !slices.Contains(runs, 45) {
		t.Errorf("runs %v: the call of 45 rows did not run alone", runs)
	}
}

// TestBatcherDeadlines checks that a call whose deadline is nearer than
// max_delay runs when the model is idle and is refused at once when it is
// busy, and that a call whose deadline passes while it waits for a run
// leaves without taking room in one.
func TestBatcherDeadlines(t *testing.T) {
	// The deadlines are long enough that a busy machine does not pass them
	// before the batcher sees the call: a refusal is told from a wait by
	// its message, which names max_delay, not by how long it took.
	const maxDelay = time.Second
	counted := &countingModel{Model: mlpModel(t, 8)}
	b := newBatcher(t, counted, larder.Batching{MaxDelay: maxDelay, MaxRows: 100, MaxQueue: 8}, 1)
	x, out := randomRows(rand.New(rand.NewPCG(3, 4)), 2), make([]float32, 2)

	// An idle model runs the call at once: it never waits for company.
	ctx, cancel := context.WithTimeout(context.Background(), maxDelay/2)
	err := b.Score(ctx, x, 2, out)
	cancel()
	if err != nil {
		t.Fatalf("a call with 500ms left and max_delay 1s, on an idle model: %v, want it scored", err)
	}

	// The next call's run holds the model until the gate opens.
	counted.Hold()
	defer counted.Release()
	first := make(chan error, 1)
	go func() { first <- b.Score(context.Background(), x, 2, make([]float32, 2)) }()
	waitUntil(t, 5*time.Second, "the held run starts", func() bool { return len(counted.Runs()) == 2 })

	ctx, cancel = context.WithTimeout(context.Background(), maxDelay/2)
	err = b.Score(ctx, x, 2, out)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "batching.max_delay") {
		t.Fatalf("a call with 500ms left and max_delay 1s, on a busy model: %v, want DeadlineExceeded at once, naming batching.max_delay", err)
	}
	if n := b.Waiting(); n != 0 {
		t.Errorf("%d calls wait after the refused call, want 0", n)
	}

	ctx, cancel = context.WithTimeout(context.Background(), maxDelay+100*time.Millisecond)
	defer cancel()
	err = b.Score(ctx, x, 2, out)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a call whose deadline passed while it waited: %v, want DeadlineExceeded", err)
	}
	if n := b.Waiting(); n != 0 {
		t.Errorf("%d calls wait after the late call left, want 0", n)
	}
	counted.Release()
	if err := <-first; err != nil {
		t.Errorf("first call: %v", err)
	}
	if runs := counted.Runs(); len(runs) != 2 {
		t.Errorf("runs %v: a refused or late call ran, want only the first two calls' runs", runs)
	}
}

// TestBatcherClose checks that closing a batcher fails the calls that wait
// at once, lets the run in flight finish, refuses later calls, and closes
// the inner model.
func TestBatcherClose(t *testing.T) {
	inner := mlpModel(t, 8)
	counted := &countingModel{Model: inner}
	counted.Hold()
	defer counted.Release()
	b := newBatcher(t, counted, larder.Batching{MaxDelay: time.Minute, MaxRows: 1000, MaxQueue: 8}, 1)
	x := randomRows(rand.New(rand.NewPCG(5, 6)), 3)
	want := make([]float32, 3)
	if err := inner.Score(context.Background(), x, 3, want); err != nil {
		t.Fatal(err)
	}

	// The first call runs at once and holds the model; three more wait.
	first, firstOut := make(chan error, 1), make([]float32, 3)
	go func() { first <- b.Score(context.Background(), x, 3, firstOut) }()
	waitUntil(t, 5*time.Second, "the first run starts", func() bool { return len(counted.Runs()) == 1 })
	errs := make(chan error, 3)
	for range 3 {
		go func() { errs <- b.Score(context.Background(), x, 3, make([]float32, 3)) }()
	}
	waitUntil(t, 5*time.Second, "3 calls wait", func() bool { return b.Waiting() == 3 })
	closed := make(chan error, 1)
	go func() { closed <- b.Close() }()
	for range 3 {
		select {
		case err := <-errs:
			if !errors.Is(err, server.ErrBatcherClosed) {
				t.Errorf("a waiting call when closed: %v, want ErrBatcherClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a waiting call did not return after Close")
		}
	}
	if err := b.Score(context.Background(), x, 3, make([]float32, 3)); !errors.Is(err, server.ErrBatcherClosed) {
		t.Errorf("a call after Close: %v, want ErrBatcherClosed", err)
	}
	select {
	case err := <-closed:
		t.Fatalf("Close returned %v while a run was in flight", err)
	case <-time.After(20 * time.Millisecond):
	}
	counted.Release()
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := <-first; err != nil {
		t.Errorf("the call in flight when closed: %v, want its scores", err)
	}
	sameScores(t, "the call in flight when closed", firstOut, want)
	counted.mu.Lock()
	innerClosed := counted.closed
	counted.mu.Unlock()
	if runs := counted.Runs(); len(runs) != 1 || !innerClosed {
		t.Errorf("runs %v, inner closed %v: want only the first call's run and the inner model closed", runs, innerClosed)
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestBatcherBadCalls checks the errors of calls that do not match the model.
func TestBatcherBadCalls(t *testing.T) {
	b := newBatcher(t, mlpModel(t, 8), larder.Batching{}, 1)
	ctx := context.Background()
	if err := b.Score(ctx, make([]float32, 5), 1, make([]float32, 1)); err == nil {
		t.Error("x of 5 values for 1 row of 6: no error")
	}
	if err := b.Score(ctx, make([]float32, 12), 2, make([]float32, 1)); err == nil {
		t.Error("out of 1 value for 2 rows: no error")
	}
	if err := b.Score(ctx, nil, 0, nil); err != nil {
		t.Errorf("0 rows: %v, want nil", err)
	}
	if _, err := server.NewBatcher(mlpModel(t, 8), batchFeatures, larder.Batching{MaxRows: -1}); err == nil {
		t.Error("NewBatcher with max_rows -1: no error")
	}
}

// batchingFixture serves the test project with the reco ranker batching as
// cfg says, over the trained model wrapped by wrap.
func batchingFixture(t *testing.T, cfg larder.Batching, wrap func(server.Model) server.Model) *fixture {
	t.Helper()
	_, trained := trainRanker(t, testProject(t, nil).Ranker("reco"))
	return newFixture(t, fixtureConfig{
		edit: func(p *larder.Project) {
			p.Ranker("reco").Batching = &cfg
			// The waits in these tests run up to max_delay, longer than
			// the server's default deadline: a request that sets none
			// would not be let wait.
			p.Server.DefaultDeadline, p.Server.MaxDeadline = time.Minute, time.Minute
		},
		models: map[string]server.Model{"reco": wrap(trained)},
	})
}

func recoRequest(user int64, items ...string) *larderv1.RankRequest {
	return &larderv1.RankRequest{
		Ranker: "reco", ContextKey: intKey(user), CandidateKeys: strKeys(items...), TopK: 10,
		RequestFeatures: map[string]*larderv1.Value{"hour": intVal(9), "mobile": boolVal(false)},
	}
}

// TestRankBatched checks the wiring: Rank calls that come while the model
// is busy share model runs, and each gets the answer it gets alone.
func TestRankBatched(t *testing.T) {
	var counted *countingModel
	const n = 6
	f := batchingFixture(t, probedBatching(n-1),
		func(m server.Model) server.Model { counted = &countingModel{Model: m}; return counted })
	reqs := []*larderv1.RankRequest{
		recoRequest(1, "i1", "i2", "i3"), recoRequest(2, "i6", "i4"), recoRequest(3, "i2", "i1", "i5", "i6"),
		recoRequest(4, "i3"), recoRequest(99, "i1", "i6", "i2"), recoRequest(1, "i4", "i5"),
	}
	if len(reqs) != n {
		t.Fatalf("%d requests, want n = %d", len(reqs), n)
	}
	alone := make([]*larderv1.RankResponse, len(reqs))
	for i, req := range reqs {
		resp, err := f.client.Rank(context.Background(), req)
		if err != nil {
			t.Fatalf("request %d alone: %v", i, err)
		}
		alone[i] = resp
	}
	if runs := counted.Runs(); len(runs) != len(reqs) {
		t.Fatalf("%d requests one after another ran the model %d times, want once each", len(reqs), len(runs))
	}

	together := make([]*larderv1.RankResponse, len(reqs))
	errs := make([]error, len(reqs))
	var wg sync.WaitGroup
	counted.Hold()
	defer counted.Release()
	for i, req := range reqs {
		wg.Go(func() { together[i], errs[i] = f.client.Rank(context.Background(), req) })
		if i == 0 {
			// The first request's run holds the model; the others wait.
			waitUntil(t, 5*time.Second, "the first run starts", func() bool { return len(counted.Runs()) == len(reqs)+1 })
		}
	}
	waitQueueFull(t, f, "the other requests queue")
	counted.Release()
	wg.Wait()
	for i := range reqs {
		if errs[i] != nil {
			t.Fatalf("request %d in a burst: %v", i, errs[i])
		}
		a, b := alone[i], together[i]
		if b.GetDegraded() || b.GetModelVersion() != a.GetModelVersion() || len(a.GetCandidates()) != len(b.GetCandidates()) {
			t.Fatalf("request %d in a burst: %v, want as alone: %v", i, b, a)
		}
		for j, c := range b.GetCandidates() {
			ac := a.GetCandidates()[j]
			if c.GetKey().GetStringValue() != ac.GetKey().GetStringValue() || math.Abs(float64(c.GetScore()-ac.GetScore())) > 1e-6 {
				t.Errorf("request %d candidate %d: %v %v, want %v %v as alone", i, j,
					c.GetKey().GetStringValue(), c.GetScore(), ac.GetKey().GetStringValue(), ac.GetScore())
			}
		}
	}
	// The first request ran alone; the others, all queued behind it by
	// then, joined one run.
	var rows int
	for _, req := range reqs[1:] {
		rows += len(req.GetCandidateKeys())
	}
	want := []int{len(reqs[0].GetCandidateKeys()), rows}
	if burst := counted.Runs()[len(reqs):]; !slices.Equal(burst, want) {
		t.Errorf("%d concurrent requests ran the model with rows %v, want %v: the first alone, the others joined", len(reqs), burst, want)
	}
}

// TestRankBatchQueueFull checks that a Rank refused for a full queue is
// RESOURCE_EXHAUSTED, not a degraded answer.
func TestRankBatchQueueFull(t *testing.T) {
	var counted *countingModel
	f := batchingFixture(t, larder.Batching{MaxDelay: 20 * time.Second, MaxQueue: 1},
		func(m server.Model) server.Model { counted = &countingModel{Model: m}; return counted })
	counted.Hold()
	defer counted.Release()
	// A first request runs at once and holds the model.
	first := make(chan error, 1)
	go func() {
		_, err := f.client.Rank(context.Background(), recoRequest(3, "i1", "i2"))
		first <- err
	}()
	waitUntil(t, 5*time.Second, "the first run starts", func() bool { return len(counted.Runs()) == 1 })

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Of two more requests, the one that comes second finds the other
	// waiting in the queue of one.
	errs := make(chan error, 2)
	for _, user := range []int64{1, 2} {
		go func() {
			_, err := f.client.Rank(ctx, recoRequest(user, "i1", "i2"))
			errs <- err
		}()
	}
	select {
	case err := <-errs:
		wantCode(t, err, codes.ResourceExhausted, "batching.max_queue")
	case <-time.After(10 * time.Second):
		t.Fatal("neither request was refused")
	}
	cancel()
	if err := <-errs; status.Code(err) != codes.Canceled {
		t.Errorf("the waiting request, cancelled: %v, want CANCELED", err)
	}
	counted.Release()
	if err := <-first; err != nil {
		t.Errorf("the first request: %v", err)
	}
}

// TestRankBatchDeadline checks that a Rank whose deadline is nearer than
// max_delay is scored when the model is idle, and fails fast with
// DEADLINE_EXCEEDED when the model is busy.
func TestRankBatchDeadline(t *testing.T) {
	var counted *countingModel
	f := batchingFixture(t, larder.Batching{MaxDelay: 2 * time.Second},
		func(m server.Model) server.Model { counted = &countingModel{Model: m}; return counted })
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := f.client.Rank(ctx, recoRequest(1, "i1", "i2")); err != nil {
		t.Fatalf("a request with 1s left on an idle model: %v, want it scored", err)
	}

	counted.Hold()
	defer counted.Release()
	first := make(chan error, 1)
	go func() {
		_, err := f.client.Rank(context.Background(), recoRequest(3, "i1", "i2"))
		first <- err
	}()
	waitUntil(t, 5*time.Second, "the held run starts", func() bool { return len(counted.Runs()) == 2 })
	ctx, cancel = context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	// Refused at once, by the batcher: a call that waited would end at its
	// own deadline, with a message that does not name max_delay.
	_, err := f.client.Rank(ctx, recoRequest(1, "i1", "i2"))
	wantCode(t, err, codes.DeadlineExceeded, "batching.max_delay")
	counted.Release()
	if err := <-first; err != nil {
		t.Errorf("the held request: %v", err)
	}
}

// TestRankBatchFailing checks that a failing model fails every request of
// its run, and that each is answered in degraded mode.
func TestRankBatchFailing(t *testing.T) {
	var counted *countingModel
	const n = 4
	f := batchingFixture(t, probedBatching(n-1),
		func(server.Model) server.Model { counted = &countingModel{Model: failingModel{}}; return counted })
	resps := make([]*larderv1.RankResponse, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	counted.Hold()
	defer counted.Release()
	for i := range n {
		wg.Go(func() {
			resps[i], errs[i] = f.client.Rank(context.Background(), recoRequest(int64(i+1), "i1", "i2", "i3"))
		})
		if i == 0 {
			// The first request's run holds the model; the others wait.
			waitUntil(t, 5*time.Second, "the first run starts", func() bool { return len(counted.Runs()) == 1 })
		}
	}
	waitQueueFull(t, f, "the other requests queue")
	counted.Release()
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("request %d: %v, want a degraded answer", i, errs[i])
		}
		if !resps[i].GetDegraded() || resps[i].GetModelVersion() != "broken-1" {
			t.Errorf("request %d: degraded %v, version %q; want degraded by broken-1", i, resps[i].GetDegraded(), resps[i].GetModelVersion())
		}
	}
	if runs := counted.Runs(); !slices.Equal(runs, []int{3, 9}) {
		t.Errorf("runs %v of the failing model, want the first request alone (3 rows), then the 3 that waited joined (9 rows)", runs)
	}
}

// A test cannot see a batching ranker's queue, yet must know when the calls
// it started wait there: probedBatching lets the queue hold exactly those
// calls, and waitQueueFull probes it with a request that a full queue
// refuses with RESOURCE_EXHAUSTED. A probe that finds room is refused at
// once all the same, for a deadline nearer than max_delay, and leaves the
// queue as it was. So the test waits for the state, not for a time that a
// busy machine may overrun.
//
// probeMaxDelay is the ranker's max_delay: long enough that the calls
// waiting behind a held run do not start a run of their own while the test
// waits, and shorter than the fixture's server deadline (a minute), so that
// the calls may wait.
const probeMaxDelay = 20 * time.Second

// probedBatching returns a ranker's batching whose queue holds queued calls.
func probedBatching(queued int) larder.Batching {
	return larder.Batching{MaxDelay: probeMaxDelay, MaxQueue: queued}
}

// waitQueueFull waits until the queue of the fixture's batching ranker is
// full, for at most max_delay: by then the calls waiting start a run.
func waitQueueFull(t *testing.T, f *fixture, what string) {
	t.Helper()
	deadline := time.Now().Add(probeMaxDelay)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), probeMaxDelay/2)
		_, err := f.client.Rank(ctx, recoRequest(1, "i1", "i2"))
		cancel()
		switch status.Code(err) {
		case codes.ResourceExhausted:
			return
		case codes.DeadlineExceeded:
			// Room in the queue: not yet.
		default:
			t.Fatalf("%s: a probe got %v, want RESOURCE_EXHAUSTED or DEADLINE_EXCEEDED", what, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the queue is not full within max_delay %s", what, probeMaxDelay)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
