package server_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/larder-dev/larder"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
	"github.com/larder-dev/larder/redistest"
	"github.com/larder-dev/larder/server"
	"github.com/larder-dev/larder/store"
)

// Sizes of the rollout test: each phase lasts until the client pool has
// made rolloutPhaseRequests requests, at least rolloutPerServer of them to
// each server up.
const (
	rolloutClients         = 3
	rolloutPhaseRequests   = 240
	rolloutPerServer       = 60
	rolloutRefresh         = time.Second      // the servers' stores' RefreshInterval
	rolloutGrace           = 30 * time.Second // the job's GracePeriod, under DefaultReaderTTL
	rolloutUsers           = 5
	rolloutViewName        = "user_feats"
	rolloutWarningPrefix   = "live server(s) read view " + rolloutViewName + " with another definition"
	rolloutOwnSchemaNotice = "serving an older generation of a view"
)

// TestSchemaRollout changes the schema of a view under load, with two
// servers behind real gRPC listeners rolled one after the other, in the
// order docs/operations.md gives ("Changing a view's schema"): clients stop
// asking for a feature that goes away, the view is materialized with the
// new definition, server A is replaced by one running the new definition,
// then server B, and only then do clients ask for a feature that was added
// or retyped. Clients send GetFeatures and Rank round-robin to the servers
// up, and every answer must be OK and read from the generation of the
// schema its server runs: zero failed requests. While B still runs the old
// definition, a cleanup past the grace period keeps the old generation;
// once B is rolled, the next cleanup deletes it.
//
// The phases advance by request counts; the clock the stores and servers
// read is a fake one that the test moves, so that cache expiry and the
// grace period come when the test says, however slow the machine.
func TestSchemaRollout(t *testing.T) {
	clicks := larder.Feature{Name: "clicks", Type: larder.TypeInt64}
	scoreInt := larder.Feature{Name: "score", Type: larder.TypeInt64}
	scoreFloat := larder.Feature{Name: "score", Type: larder.TypeFloat64}
	bonus := larder.Feature{Name: "bonus", Type: larder.TypeInt64}
	legacy := larder.Feature{Name: "legacy", Type: larder.TypeString}
	tests := []struct {
		name     string
		old, new []larder.Feature
		// The features of the view that clients ask for: before the change,
		// from the first step of the rollout until both servers run the new
		// definition, and after.
		before, during, after []string
	}{
		{
			name: "added",
			old:  []larder.Feature{clicks, scoreFloat},
			new:  []larder.Feature{clicks, scoreFloat, bonus},
			// Clients ask for bonus only once every server knows it.
			before: []string{"clicks", "score"},
			during: []string{"clicks", "score"},
			after:  []string{"clicks", "score", "bonus"},
		},
		{
			name: "removed",
			old:  []larder.Feature{clicks, legacy, scoreFloat},
			new:  []larder.Feature{clicks, scoreFloat},
			// Clients stop asking for legacy before anything else changes.
			before: []string{"legacy", "clicks", "score"},
			during: []string{"clicks", "score"},
			after:  []string{"clicks", "score"},
		},
		{
			name: "retyped",
			old:  []larder.Feature{clicks, scoreInt},
			new:  []larder.Feature{clicks, scoreFloat},
			// During the rollout score comes as an int64 from a server of
			// the old definition and as a float64 from one of the new: the
			// clients that need the float64 wait for the end of the rollout.
			before: []string{"clicks", "score"},
			during: []string{"clicks", "score"},
			after:  []string{"clicks", "score"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			began := time.Now()
			ctx := context.Background()
			oldP, newP := rolloutProject(t, tt.old), rolloutProject(t, tt.new)
			if oldP.View(rolloutViewName).Fingerprint() == newP.View(rolloutViewName).Fingerprint() {
				t.Fatal("the two definitions have the same schema fingerprint")
			}
			rs := redistest.Start(t)
			clk := newClock(time.Now().UTC().Truncate(time.Microsecond))
			jobLogs := &syncBuffer{}
			job := store.New(rs.Client(), oldP.Name, store.Options{Now: clk.Now, Owner: "job:1", GracePeriod: rolloutGrace,
				Logger: slog.New(slog.NewTextHandler(jobLogs, nil))})

			publish(t, job, oldP, "item_info", rolloutItems(clk.Now()))
			g1 := publish(t, job, oldP, rolloutViewName, rolloutRows(oldP, 1, clk.Now()))

			ro := &rollout{t: t, rs: rs, clk: clk}
			ro.features.Store(&tt.before)
			a := ro.start("server-a/1", oldP, 1, g1.ID)
			b := ro.start("server-b/1", oldP, 1, g1.ID)
			// Each step begins a phase, so that the requests sent while it
			// happens count in it, and the phase lasts until enough requests
			// were made after it.
			ro.begin("old schema")
			ro.run(rolloutClients)
			defer ro.stopClients()
			ro.wait()

			ro.begin("clients changed")
			ro.features.Store(&tt.during)
			ro.wait()

			// Materialize with the new definition: both servers run the old
			// one, so the publish warns, and they keep serving g1.
			ro.begin("materialized")
			g2 := publish(t, job, newP, rolloutViewName, rolloutRows(newP, 2, clk.Now()))
			if !strings.Contains(jobLogs.String(), "2 "+rolloutWarningPrefix) {
				t.Errorf("the publish of generation %d did not warn of the two servers reading the old schema:\n%s", g2.ID, jobLogs.String())
			}
			clk.Add(3 * rolloutRefresh) // the servers' cached live generations expire
			ro.wait()
			for _, s := range []*target{a, b} {
				if !strings.Contains(s.logs.String(), rolloutOwnSchemaNotice) {
					t.Errorf("%s, of the old definition, did not log that it serves an older generation:\n%s", s.name, s.logs.String())
				}
			}

			ro.begin("A rolled")
			ro.roll(a, "server-a/2", newP, 2, g2.ID)
			ro.wait()
			ro.wantReaders(ctx, job, map[string]string{
				"server-a/2": newP.View(rolloutViewName).Fingerprint(),
				"server-b/1": oldP.View(rolloutViewName).Fingerprint(),
			})

			// Past the grace period, g1 is kept for B, which still reads
			// it; B's registration, made at the start, has not lapsed.
			ro.begin("grace passed")
			clk.Add(rolloutGrace + time.Second)
			rep, err := job.Cleanup(ctx, store.CleanupOptions{})
			if err != nil || len(rep.Cleaned) != 0 {
				t.Errorf("cleanup past the grace period while B reads the old schema = %+v, %v; want nothing deleted", rep, err)
			}
			ro.wait()

			ro.begin("B rolled")
			ro.roll(b, "server-b/2", newP, 2, g2.ID)
			ro.wait()
			ro.wantReaders(ctx, job, map[string]string{
				"server-a/2": newP.View(rolloutViewName).Fingerprint(),
				"server-b/2": newP.View(rolloutViewName).Fingerprint(),
			})

			ro.begin("old generation deleted")
			rep, err = job.Cleanup(ctx, store.CleanupOptions{})
			if err != nil || len(rep.Cleaned) != 1 || rep.Cleaned[0].Generation != g1.ID {
				t.Errorf("cleanup once no server reads the old schema = %+v, %v; want generation %d deleted", rep, err, g1.ID)
			}
			ro.wait()

			ro.begin("new features requested")
			ro.features.Store(&tt.after)
			ro.wait()
			ro.stopClients()

			total, failed := ro.report()
			t.Logf("%d requests, %d failed, in %s", total, failed, time.Since(began).Round(time.Millisecond))
			if failed != 0 {
				t.Errorf("%d of %d requests failed during the rollout, want 0; the first:\n%s", failed, total, strings.Join(ro.firstErrors(), "\n"))
			}
		})
	}
}

// rolloutProject returns the project of the rollout test: a view
// user_feats of users with features, the one whose schema changes; a view
// item_info of items with a price; and the ranker reco over user_feats:clicks
// and item_info:price, which every definition of user_feats must hold.
func rolloutProject(tb testing.TB, features []larder.Feature) *larder.Project {
	tb.Helper()
	p := &larder.Project{
		Name: "rollout",
		Entities: []*larder.Entity{
			{Name: "user", Key: "user_id", KeyType: larder.TypeInt64},
			{Name: "item", Key: "item_id", KeyType: larder.TypeString},
		},
		Sources: []*larder.Source{{Name: "events", Path: "events.parquet", EventTime: "ts"}},
		Views: []*larder.View{
			{Name: rolloutViewName, Kind: larder.KindLatest, Entity: "user", Source: "events", MaxAge: 24 * time.Hour,
				Features: slices.Clone(features)},
			{Name: "item_info", Kind: larder.KindLatest, Entity: "item", Source: "events", MaxAge: 24 * time.Hour,
				Features: []larder.Feature{{Name: "price", Type: larder.TypeFloat64}}},
		},
		Rankers: []*larder.Ranker{{
			Name: "reco", Model: "reco.onnx", Context: "user", Candidate: "item", TopK: 3,
			Inputs: []larder.RankerInput{{Ref: rolloutViewName + ":clicks"}, {Ref: "item_info:price"}},
		}},
	}
	p.SetDefaults()
	if err := p.Validate(); err != nil {
		tb.Fatalf("rollout project: %v", err)
	}
	return p
}

// rolloutItems are the items i1, i2 and i3, priced 1, 2 and 3.
func rolloutItems(now time.Time) map[larder.Key]larder.Row {
	rows := map[larder.Key]larder.Row{}
	for i := 1; i <= 3; i++ {
		rows[larder.StringKey("i"+strconv.Itoa(i))] = larder.Row{EventTime: now.Add(-time.Minute),
			Values: []larder.Value{larder.Float64Value(float64(i))}}
	}
	return rows
}

// rolloutRows are the rows of users 1 to rolloutUsers in the seq-th
// materialization of user_feats with p's definition.
func rolloutRows(p *larder.Project, seq int64, now time.Time) map[larder.Key]larder.Row {
	v := p.View(rolloutViewName)
	rows := map[larder.Key]larder.Row{}
	for id := int64(1); id <= rolloutUsers; id++ {
		vals := make([]larder.Value, len(v.Features))
		for i, f := range v.Features {
			n := rolloutNumber(f.Name, seq, id)
			switch f.Type {
			case larder.TypeInt64:
				vals[i] = larder.Int64Value(n)
			case larder.TypeFloat64:
				vals[i] = larder.Float64Value(float64(n) + 0.5)
			case larder.TypeString:
				vals[i] = larder.StringValue(strconv.FormatInt(n, 10))
			}
		}
		rows[larder.Int64Key(id)] = larder.Row{EventTime: now.Add(-time.Minute), Values: vals}
	}
	return rows
}

// rolloutNumber is the number a feature's value is made of, for user id in
// the seq-th materialization: every value says which run wrote it.
func rolloutNumber(feature string, seq, id int64) int64 {
	return seq*1_000_000 + id*100 + int64(len(feature))
}

// rolloutWant is the value of feature f (as typed in a definition) for
// user id in the seq-th materialization, as a client receives it.
func rolloutWant(f larder.Feature, seq, id int64) *larderv1.Value {
	n := rolloutNumber(f.Name, seq, id)
	switch f.Type {
	case larder.TypeInt64:
		return intVal(n)
	case larder.TypeFloat64:
		return f64Val(float64(n) + 0.5)
	default:
		return strVal(strconv.FormatInt(n, 10))
	}
}

// rollout is a pool of servers of one project on one Redis, and the
// clients that load them.
type rollout struct {
	t   *testing.T
	rs  *redistest.Server
	clk *clock

	// features are the features of user_feats the clients ask for.
	features atomic.Pointer[[]string]

	mu   sync.Mutex
	up   []*target // the servers the clients send to
	next int       // round-robin position in up

	cur     atomic.Pointer[phaseCount]
	phases  []*phaseCount
	errMu   sync.Mutex
	errs    []string
	stop    chan struct{}
	clients sync.WaitGroup
}

// target is one server: a Service behind its own gRPC listener, with its
// own store, registered as a reader of its definition.
type target struct {
	name    string
	project *larder.Project
	view    *larder.View
	seq     int64 // the materialization of its schema it must serve
	gen     int64 // the generation of user_feats it must serve
	run     *running
	logs    *syncBuffer
	stopBg  context.CancelFunc
	bg      sync.WaitGroup // Watch and KeepReadersRegistered
	using   sync.WaitGroup // requests sent to it in flight
}

// phaseCount counts the requests of one phase, by server.
type phaseCount struct {
	name     string
	mu       sync.Mutex
	total    int
	failed   int
	byServer map[string]int
}

// start starts a server of p named owner, which must serve generation gen
// (the seq-th materialization), and adds it to the pool.
func (ro *rollout) start(owner string, p *larder.Project, seq, gen int64) *target {
	t := ro.t
	t.Helper()
	tg := &target{name: owner, project: p, view: p.View(rolloutViewName), seq: seq, gen: gen, logs: &syncBuffer{}}
	logger := slog.New(slog.NewTextHandler(tg.logs, nil))
	st := store.New(ro.rs.Client(), p.Name, store.Options{Now: ro.clk.Now, Owner: owner, ServeOwnSchema: true,
		RefreshInterval: rolloutRefresh, Logger: logger})
	ctx := context.Background()
	// Registered before it serves, as larder serve does; then kept
	// registered until it stops.
	if err := st.RegisterReaders(ctx, p.Views, store.DefaultReaderTTL); err != nil {
		t.Fatalf("register %s: %v", owner, err)
	}
	bg, cancel := context.WithCancel(ctx)
	tg.stopBg = cancel
	tg.bg.Go(func() { st.KeepReadersRegistered(bg, func() []*larder.View { return p.Views }, store.DefaultReaderTTL) })
	tg.bg.Go(func() { _ = st.Watch(bg) })
	t.Cleanup(func() { cancel(); tg.bg.Wait() })
	tg.run = serve(t, server.Config{Project: p, Store: st, Models: map[string]server.Model{"reco": &fuzzModel{}},
		Now: ro.clk.Now, Logger: logger}, 10*time.Second)
	ro.mu.Lock()
	ro.up = append(ro.up, tg)
	ro.mu.Unlock()
	return tg
}

// roll replaces old by a new server: the clients stop sending to old, its
// requests in flight end, it stops gracefully and unregisters; then the
// new server starts and the clients send to it.
func (ro *rollout) roll(old *target, owner string, p *larder.Project, seq, gen int64) *target {
	t := ro.t
	t.Helper()
	ro.mu.Lock()
	ro.up = slices.DeleteFunc(ro.up, func(tg *target) bool { return tg == old })
	ro.mu.Unlock()
	old.using.Wait()
	old.run.cancel() // Serve stops gracefully
	if err, ok := old.run.wait(time.Minute); !ok || err != nil {
		t.Fatalf("stopping %s: Serve returned %v (returned: %v)", old.name, err, ok)
	}
	old.stopBg()
	old.bg.Wait() // KeepReadersRegistered has unregistered it
	return ro.start(owner, p, seq, gen)
}

// run starts n clients, each sending GetFeatures and Rank in turn to the
// servers up, round-robin, until stopClients. A phase must have begun.
func (ro *rollout) run(n int) {
	stop := make(chan struct{})
	ro.mu.Lock()
	ro.stop = stop
	ro.mu.Unlock()
	for c := range n {
		ro.clients.Go(func() {
			for i := c; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				ro.request(i%2 == 0, int64(i%rolloutUsers)+1)
			}
		})
	}
}

// stopClients stops the clients and waits for their last requests; it may
// be called more than once.
func (ro *rollout) stopClients() {
	ro.mu.Lock()
	stop := ro.stop
	ro.stop = nil
	ro.mu.Unlock()
	if stop != nil {
		close(stop)
		ro.clients.Wait()
	}
}

// request sends one request to the next server up and checks its answer.
func (ro *rollout) request(rank bool, user int64) {
	ro.mu.Lock()
	if len(ro.up) == 0 {
		ro.mu.Unlock()
		ro.fail(ro.cur.Load(), "no server up")
		return
	}
	tg := ro.up[ro.next%len(ro.up)]
	ro.next++
	tg.using.Add(1)
	features := *ro.features.Load()
	ph := ro.cur.Load()
	ro.mu.Unlock()
	defer tg.using.Done()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var err error
	if rank {
		err = ro.rank(ctx, tg, user)
	} else {
		err = ro.getFeatures(ctx, tg, features)
	}
	ph.mu.Lock()
	ph.total++
	ph.byServer[tg.name]++
	ph.mu.Unlock()
	if err != nil {
		method := "GetFeatures"
		if rank {
			method = "Rank"
		}
		ro.fail(ph, fmt.Sprintf("%s to %s: %v", method, tg.name, err))
	}
}

// getFeatures asks tg for features of every user and checks that each
// value comes from the materialization of tg's schema.
func (ro *rollout) getFeatures(ctx context.Context, tg *target, features []string) error {
	req := &larderv1.GetFeaturesRequest{}
	for id := int64(1); id <= rolloutUsers; id++ {
		req.Keys = append(req.Keys, intKey(id))
	}
	for _, f := range features {
		req.Features = append(req.Features, rolloutViewName+":"+f)
	}
	resp, err := tg.run.client.GetFeatures(ctx, req)
	if err != nil {
		return err
	}
	if g := generationOf(resp.Generations, rolloutViewName); g != tg.gen {
		return fmt.Errorf("read generation %d, want %d", g, tg.gen)
	}
	if !slices.Equal(columnNames(resp), req.Features) {
		return fmt.Errorf("columns %q, want %q", columnNames(resp), req.Features)
	}
	rows := rowsOf(resp)
	if len(rows) != rolloutUsers {
		return fmt.Errorf("%d rows, want %d", len(rows), rolloutUsers)
	}
	for i, row := range rows {
		id := int64(i) + 1
		for j, name := range features {
			fi := tg.view.FeatureIndex(name)
			if fi < 0 {
				return fmt.Errorf("the test asked %s for %s, which its definition lacks", tg.name, name)
			}
			got, want := row[j], rolloutWant(tg.view.Features[fi], tg.seq, id)
			if got.status != larderv1.FeatureStatus_FEATURE_STATUS_PRESENT || !proto.Equal(got.value, want) {
				return fmt.Errorf("user %d %s = %v (%s), want %v", id, name, got.value, got.status, want)
			}
		}
	}
	return nil
}

// rank asks tg to rank the three items for user and checks the scores,
// which the fuzz model makes the sum of clicks and price.
func (ro *rollout) rank(ctx context.Context, tg *target, user int64) error {
	resp, err := tg.run.client.Rank(ctx, &larderv1.RankRequest{Ranker: "reco", ContextKey: intKey(user),
		CandidateKeys: strKeys("i1", "i2", "i3")})
	if err != nil {
		return err
	}
	if resp.Degraded {
		return fmt.Errorf("degraded: %s", resp.DegradedReason)
	}
	if g := generationOf(resp.Generations, rolloutViewName); g != tg.gen {
		return fmt.Errorf("ranked with generation %d, want %d", g, tg.gen)
	}
	clicks := float32(rolloutNumber("clicks", tg.seq, user))
	if len(resp.Candidates) != 3 {
		return fmt.Errorf("%d candidates, want 3", len(resp.Candidates))
	}
	for i, c := range resp.Candidates {
		price := float32(3 - i)
		if c.Key.GetStringValue() != "i"+strconv.Itoa(3-i) || c.Score != clicks+price {
			return fmt.Errorf("candidate %d = %s scored %v, want i%d scored %v", i, c.Key.GetStringValue(), c.Score, 3-i, clicks+price)
		}
	}
	return nil
}

// generationOf returns the generation of view in gens, or 0.
func generationOf(gens []*larderv1.ViewGeneration, view string) int64 {
	for _, g := range gens {
		if g.View == view {
			return g.Generation
		}
	}
	return 0
}

// fail records a failed request of ph; the first few are kept whole.
func (ro *rollout) fail(ph *phaseCount, msg string) {
	ph.mu.Lock()
	ph.failed++
	ph.mu.Unlock()
	ro.errMu.Lock()
	if len(ro.errs) < 10 {
		ro.errs = append(ro.errs, ph.name+": "+msg)
	}
	ro.errMu.Unlock()
}

// begin counts the requests sent from now on under name.
func (ro *rollout) begin(name string) {
	ph := &phaseCount{name: name, byServer: map[string]int{}}
	ro.cur.Store(ph)
	ro.phases = append(ro.phases, ph)
}

// wait lets the clients run until they have made rolloutPhaseRequests
// requests in the current phase, at least rolloutPerServer to each server
// up. It waits on counts, not on time: a failed request counts too, so it
// ends however the requests fare.
func (ro *rollout) wait() {
	ph := ro.cur.Load()
	for {
		ro.mu.Lock()
		up := slices.Clone(ro.up)
		ro.mu.Unlock()
		ph.mu.Lock()
		done := ph.total >= rolloutPhaseRequests
		for _, tg := range up {
			done = done && ph.byServer[tg.name] >= rolloutPerServer
		}
		ph.mu.Unlock()
		if done {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// wantReaders fails the test unless the readers registered for user_feats
// are want: the schema fingerprint of each server by owner.
func (ro *rollout) wantReaders(ctx context.Context, st *store.Store, want map[string]string) {
	ro.t.Helper()
	rs, err := st.Readers(ctx, rolloutViewName)
	if err != nil {
		ro.t.Fatalf("readers: %v", err)
	}
	got := map[string]string{}
	for _, r := range rs {
		got[r.Owner] = r.Fingerprint
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		ro.t.Errorf("readers of %s = %v, want %v", rolloutViewName, got, want)
	}
}

// report logs the requests of each phase and returns the totals.
func (ro *rollout) report() (total, failed int) {
	for _, ph := range ro.phases {
		ph.mu.Lock()
		servers := make([]string, 0, len(ph.byServer))
		for name, n := range ph.byServer {
			servers = append(servers, fmt.Sprintf("%s %d", name, n))
		}
		slices.Sort(servers)
		ro.t.Logf("phase %-24s %4d requests, %d failed (%s)", ph.name+":", ph.total, ph.failed, strings.Join(servers, ", "))
		total += ph.total
		failed += ph.failed
		ph.mu.Unlock()
	}
	return total, failed
}

// firstErrors returns the first failed requests.
func (ro *rollout) firstErrors() []string {
	ro.errMu.Lock()
	defer ro.errMu.Unlock()
	return slices.Clone(ro.errs)
}
