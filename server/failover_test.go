package server_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/larder-dev/larder"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
	"github.com/larder-dev/larder/redistest"
	"github.com/larder-dev/larder/server"
	"github.com/larder-dev/larder/store"
)

// Bounds of the failover tests: generous, for a loaded test machine. The
// figures they measure are logged.
const (
	// failoverBound bounds a failover, from the kill until the clients are
	// answered again.
	failoverBound = 30 * time.Second
	// failoverMargin is how long after the clients' first answer errors may
	// still end calls that began before it.
	failoverMargin = time.Second
	// failoverDeadline is each GetFeatures call's deadline.
	failoverDeadline = 500 * time.Millisecond
	// failoverUsers is the number of users in user_stats.
	failoverUsers = 500
)

// failoverTopology is a Redis deployment that fails over by itself.
type failoverTopology struct {
	redis     larder.Redis
	replicate func(tb testing.TB)
	// kill kills the master that holds the live pointer of user_stats, so
	// that health checks see the outage; failover waits until a replica
	// has taken its place.
	kill     func(tb testing.TB)
	failover func(tb testing.TB)
}

// TestFailoverServe serves GetFeatures from Redis while the master that
// holds user_stats's live pointer is killed and a replica takes over: on a
// Redis Cluster with replicas, and behind Sentinels.
func TestFailoverServe(t *testing.T) {
	t.Run("cluster", func(t *testing.T) {
		checkLeaks(t)
		c := redistest.StartClusterWithReplicas(t, 3, 1)
		var killed *redistest.Server
		failoverServe(t, failoverTopology{
			redis:     larder.Redis{Addrs: c.Addrs},
			replicate: c.WaitReplicated,
			kill:      func(tb testing.TB) { killed = c.KillMasterOf(tb, "larder:srvtest:{user_stats}:live") },
			failover: func(tb testing.TB) {
				c.WaitHealthy(tb, failoverBound)
				if c.MasterOf(tb, "larder:srvtest:{user_stats}:live") == killed {
					tb.Fatalf("user_stats's live pointer is still on the killed %s", killed.Addr)
				}
			},
		})
	})
	t.Run("sentinel", func(t *testing.T) {
		checkLeaks(t)
		d := redistest.StartSentinel(t)
		var killed *redistest.Server
		failoverServe(t, failoverTopology{
			redis:     larder.Redis{Addrs: d.Addrs, MasterName: d.MasterName},
			replicate: d.WaitReplicated,
			kill:      func(tb testing.TB) { killed = d.KillMaster(tb) },
			failover:  func(tb testing.TB) { d.WaitFailover(tb, killed, failoverBound) },
		})
	})
}

// leakGrace is how long goroutines may take to end once a test's cleanups
// have run.
const leakGrace = 5 * time.Second

// checkLeaks fails tb when goroutines that were not running when it was
// called still run once tb's cleanups have run (the server stopped, its
// clients closed, Redis stopped). It is called first, so that its cleanup
// runs last; tb must not run in parallel with other tests.
func checkLeaks(tb testing.TB) {
	tb.Helper()
	running := goleak.IgnoreCurrent()
	tb.Cleanup(func() {
		// A closed go-redis pool's redial loop ends only after its current
		// one-second sleep: give such goroutines a few seconds.
		deadline := time.Now().Add(leakGrace)
		for {
			err := goleak.Find(running)
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				tb.Errorf("goroutines leaked: %v", err)
				return
			}
			time.Sleep(250 * time.Millisecond)
		}
	})
}

// callResult is one GetFeatures call of a client.
type callResult struct {
	start, end time.Time
	code       codes.Code
	msg        string
	wrong      string // what was wrong with an OK answer
}

// failoverServe serves user_stats from topo through server.NewGRPC, with
// server.WatchHealth and the store's Watch running as larder serve runs
// them, calls GetFeatures from a few clients while a master is killed, and
// checks that:
//   - calls fail only within the failover, with UNAVAILABLE or
//     DEADLINE_EXCEEDED, never another code;
//   - an OK answer has every row PRESENT, with the values of the generation
//     it names, the one published;
//   - health turns NOT_SERVING during the outage (the killed master holds
//     the live pointer that Ready reads) and SERVING again, and the server
//     answers again, with no restart.
//
// It logs the failover as the clients saw it.
func failoverServe(t *testing.T, topo failoverTopology) {
	p := testProject(t, nil)
	client, err := store.Connect(topo.redis)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	st := store.New(client, p.Name, store.Options{})
	gen := publishStats(t, st, p)
	topo.replicate(t)

	cfg := server.Config{Project: p, Store: st, Models: map[string]server.Model{"reco": newFakeModel("v1", 1)}}
	svc, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := serve(t, cfg, time.Second)
	bg, stopBG := context.WithCancel(context.Background())
	var bgDone sync.WaitGroup
	defer func() { stopBG(); bgDone.Wait() }()
	bgDone.Go(func() { server.WatchHealth(bg, svc, 250*time.Millisecond, r.grpc) })
	bgDone.Go(func() { _ = st.Watch(bg) })

	// A health Watch stream sees every change of status.
	health, err := healthpb.NewHealthClient(r.conn).Watch(bg, &healthpb.HealthCheckRequest{Service: "larder.v1.FeatureService"})
	if err != nil {
		t.Fatal(err)
	}
	type change struct {
		at     time.Time
		status healthpb.HealthCheckResponse_ServingStatus
	}
	var (
		mu      sync.Mutex
		changes []change
		results []callResult
		stop    atomic.Bool
		callers sync.WaitGroup
	)
	bgDone.Go(func() {
		for {
			resp, err := health.Recv()
			if err != nil {
				return
			}
			mu.Lock()
			changes = append(changes, change{time.Now(), resp.GetStatus()})
			mu.Unlock()
		}
	})
	// waitFor waits until cond, called under mu, holds.
	waitFor := func(what string, cond func() bool) time.Time {
		t.Helper()
		deadline := time.Now().Add(failoverBound)
		for time.Now().Before(deadline) {
			mu.Lock()
			ok := cond()
			mu.Unlock()
			if ok {
				return time.Now()
			}
			time.Sleep(10 * time.Millisecond)
		}
		stop.Store(true)
		callers.Wait()
		t.Fatalf("%s: not within %s", what, failoverBound)
		return time.Time{}
	}
	servingSince := func(since time.Time, want healthpb.HealthCheckResponse_ServingStatus) func() bool {
		return func() bool {
			for _, c := range changes {
				if c.status == want && !c.at.Before(since) {
					return true
				}
			}
			return false
		}
	}
	waitFor("health SERVING before the kill", func() bool {
		return len(changes) > 0 && changes[len(changes)-1].status == healthpb.HealthCheckResponse_SERVING
	})

	for c := range 3 {
		callers.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(c), 11))
			ids := make([]int64, 20)
			req := &larderv1.GetFeaturesRequest{Features: []string{"user_stats:*"}}
			for !stop.Load() {
				for i := range ids {
					ids[i] = 1 + rng.Int64N(failoverUsers)
				}
				req.Keys = intKeys(ids...)
				ctx, cancel := context.WithTimeout(context.Background(), failoverDeadline)
				res := callResult{start: time.Now()}
				resp, err := r.client.GetFeatures(ctx, req)
				res.end = time.Now()
				cancel()
				s := status.Convert(err)
				res.code, res.msg = s.Code(), s.Message()
				if err == nil {
					res.wrong = checkStats(resp, ids, gen.ID)
				}
				mu.Lock()
				results = append(results, res)
				mu.Unlock()
				time.Sleep(2 * time.Millisecond)
			}
		})
	}
	answeredSince := func(since time.Time) func() bool {
		return func() bool {
			for _, r := range results {
				if r.code == codes.OK && r.start.After(since) {
					return true
				}
			}
			return false
		}
	}
	waitFor("an answer before the kill", answeredSince(time.Now()))
	time.Sleep(500 * time.Millisecond)

	killedAt := time.Now()
	topo.kill(t)
	waitFor("health NOT_SERVING after the kill", servingSince(killedAt, healthpb.HealthCheckResponse_NOT_SERVING))
	notServing := time.Now()
	topo.failover(t)
	elected := time.Now()
	firstOK := waitFor("an answer after the failover", answeredSince(elected))
	waitFor("health SERVING after the failover", servingSince(notServing, healthpb.HealthCheckResponse_SERVING))
	// Calls that begin after the failover ended are answered.
	waitFor("an answer after the failover ended", answeredSince(firstOK.Add(failoverMargin)))
	time.Sleep(500 * time.Millisecond)
	stop.Store(true)
	callers.Wait()

	// The figures. Calls may fail from the kill until shortly after the
	// clients are answered again; outside that window, only a call that ran
	// out of time may fail, as one may on a loaded machine.
	windowEnd := firstOK.Add(failoverMargin)
	var inWindow, unavailable, timedOut, slow, wrong int
	var firstFail, lastFail time.Time
	for _, r := range results {
		if r.wrong != "" {
			wrong++
			if wrong <= 5 {
				t.Errorf("an OK answer at %s after the kill is wrong: %s", r.start.Sub(killedAt), r.wrong)
			}
		}
		if r.code == codes.OK {
			continue
		}
		if r.code != codes.Unavailable && r.code != codes.DeadlineExceeded {
			t.Errorf("a call at %s after the kill failed with %s %q, want UNAVAILABLE or DEADLINE_EXCEEDED", r.start.Sub(killedAt), r.code, r.msg)
		}
		if r.start.Before(killedAt) || r.start.After(windowEnd) {
			if r.code != codes.DeadlineExceeded {
				t.Errorf("a call at %s after the kill, outside the failover (which the clients saw end %s after the kill), failed: %s %q",
					r.start.Sub(killedAt), firstOK.Sub(killedAt), r.code, r.msg)
			}
			slow++
			continue
		}
		inWindow++
		if r.code == codes.DeadlineExceeded {
			timedOut++
		} else {
			unavailable++
		}
		if firstFail.IsZero() || r.start.Before(firstFail) {
			firstFail = r.start
		}
		if r.start.After(lastFail) {
			lastFail = r.start
		}
	}
	var outage time.Duration
	if inWindow > 0 {
		// From the first failure to the end of the first call that began
		// after the last failure and was answered.
		var recovered time.Time
		for _, r := range results {
			if r.code == codes.OK && r.start.After(lastFail) && (recovered.IsZero() || r.end.Before(recovered)) {
				recovered = r.end
			}
		}
		outage = recovered.Sub(firstFail)
	}
	mu.Lock()
	var healthLog string
	for _, c := range changes {
		if c.at.After(windowEnd) {
			break
		}
		healthLog += fmt.Sprintf(" %s at %s;", c.status, c.at.Sub(killedAt).Round(time.Millisecond))
	}
	mu.Unlock()
	t.Logf("failover: replica elected %s after the kill; health:%s the clients failed from %s to %s after it, an outage of %s as they saw it; "+
		"%d of %d calls failed within it (%d UNAVAILABLE, %d DEADLINE_EXCEEDED), %d outside it ran out of time; %d OK answers were wrong",
		elected.Sub(killedAt).Round(time.Millisecond), healthLog, offset(firstFail, killedAt), offset(lastFail, killedAt), outage.Round(time.Millisecond),
		inWindow, len(results), unavailable, timedOut, slow, wrong)
}

// statsRow is the row of user id in user_stats of generation gen: both
// are encoded in its values, so that a reader can tell which generation it
// read.
func statsRow(id, gen int64) larder.Row {
	return larder.Row{EventTime: time.Unix(1700000000, 0).UTC(), Values: []larder.Value{
		larder.Int64Value(gen*1_000_000 + id), larder.Float64Value(float64(id) / 4),
	}}
}

// publishStats publishes a generation of user_stats with failoverUsers
// users.
func publishStats(tb testing.TB, st *store.Store, p *larder.Project) larder.Generation {
	tb.Helper()
	ctx := context.Background()
	w, err := st.BeginSized(ctx, p.View("user_stats"), failoverUsers)
	if err != nil {
		tb.Fatal(err)
	}
	for id := int64(1); id <= failoverUsers; id++ {
		if err := w.Put(ctx, larder.Int64Key(id), statsRow(id, w.ID())); err != nil {
			tb.Fatal(err)
		}
	}
	g, err := w.Publish(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	return g
}

// checkStats returns what is wrong with an answer for user_stats:* of ids:
// "" when it read generation gen and every row is PRESENT with that
// generation's values.
func checkStats(resp *larderv1.GetFeaturesResponse, ids []int64, gen int64) string {
	if gs := resp.GetGenerations(); len(gs) != 1 || gs[0].GetGeneration() != gen {
		return fmt.Sprintf("generations %v, want user_stats %d", gs, gen)
	}
	rows := rowsOf(resp)
	if len(rows) != len(ids) {
		return fmt.Sprintf("%d rows for %d keys", len(rows), len(ids))
	}
	for i, vals := range rows {
		want := statsRow(ids[i], gen)
		if len(vals) != 2 {
			return fmt.Sprintf("user %d: %d values, want 2", ids[i], len(vals))
		}
		for j, v := range vals {
			if v.status != larderv1.FeatureStatus_FEATURE_STATUS_PRESENT {
				return fmt.Sprintf("user %d: %s is %s, want PRESENT: every user asked for is published", ids[i], resp.GetColumns()[j].GetName(), v.status)
			}
		}
		if vals[0].value.GetInt64Value() != want.Values[0].Int64() || vals[1].value.GetFloat64Value() != want.Values[1].Float64() {
			return fmt.Sprintf("user %d: values %v, want those of generation %d", ids[i], vals, gen)
		}
	}
	return ""
}

func offset(t, from time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Sub(from).Round(time.Millisecond).String()
}
