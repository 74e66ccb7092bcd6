package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/larder-dev/larder/bench"
	"github.com/larder-dev/larder/demo"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
	"github.com/larder-dev/larder/redistest"
)

// Environment of TestSoak: how long it runs (it is skipped unless set; `make
// soak` sets 10m), and how often it publishes.
const (
	soakEnv        = "LARDER_SOAK"
	soakPublishEnv = "LARDER_SOAK_PUBLISH"
)

// The soak's steady load: GetFeatures of 10 users (user_profile:* and
// user_activity:*) and Rank of 100 items for a user, each at a fixed rate
// spread over a few callers. A caller that falls behind sends at once, but
// never sends the calls it missed in a burst.
const (
	soakGetRate     = 400 // GetFeatures calls a second
	soakRankRate    = 100 // Rank calls a second
	soakGetCallers  = 8
	soakRankCallers = 4
)

// soakLatencies are the latencies of the calls of one kind since the last
// take, and the counts since the start.
type soakLatencies struct {
	mu       sync.Mutex
	window   []time.Duration
	requests int
	errors   int
	firstErr error
}

func (l *soakLatencies) add(d time.Duration, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.requests++
	if err != nil {
		l.errors++
		if l.firstErr == nil {
			l.firstErr = err
		}
		return
	}
	l.window = append(l.window, d)
}

// take returns the p99 of the calls since the last take, and how many
// there were, and starts a new window.
func (l *soakLatencies) take() (p99 time.Duration, n int) {
	l.mu.Lock()
	w := l.window
	l.window = nil
	l.mu.Unlock()
	if len(w) == 0 {
		return 0, 0
	}
	slices.Sort(w)
	return bench.Percentile(w, 0.99), len(w)
}

// TestSoak serves the demo shop (10,000 users, 2,000 items) from `larder
// serve` as a process, on a redis-server, under a steady load of GetFeatures
// and Rank for LARDER_SOAK (such as 10m), and materializes every view
// again every LARDER_SOAK_PUBLISH (1m by default, the first half an
// interval in), as a process of its own. It logs, each minute,
// the server's resident memory and the p99 latency of each call over that
// minute, and at the end the figures of the first and the last minute, the
// requests, errors and publishes. It fails on any error. It is skipped
// unless LARDER_SOAK is set: `make soak` runs it.
func TestSoak(t *testing.T) {
	setting := os.Getenv(soakEnv)
	if setting == "" {
		t.Skipf("set %s to a duration, such as 10m, to run the soak (make soak)", soakEnv)
	}
	duration, err := time.ParseDuration(setting)
	if err != nil || duration <= 0 {
		t.Fatalf("%s=%q: want a duration, such as 10m", soakEnv, setting)
	}
	publishEvery := time.Minute
	if s := os.Getenv(soakPublishEnv); s != "" {
		if publishEvery, err = time.ParseDuration(s); err != nil || publishEvery <= 0 {
			t.Fatalf("%s=%q: want a duration, such as 1m", soakPublishEnv, s)
		}
	}
	// The figures are taken over windows of a minute, or a quarter of a
	// shorter soak.
	window := min(time.Minute, duration/4)
	ctx := t.Context()

	redis := redistest.Start(t)
	dir := t.TempDir()
	dataNow := time.Now().UTC().Truncate(time.Second)
	ds, err := demo.Generate(ctx, dir, demo.Options{Users: 10_000, Items: 2_000, Events: 200_000, Seed: 1, Now: dataNow})
	if err != nil {
		t.Fatal(err)
	}
	trainer := &app{stdout: io.Discard, stderr: io.Discard, now: func() time.Time { return dataNow }}
	if err := trainer.trainDemoModels(ctx, ds, dir); err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, demo.ProjectFile)
	// materialize runs `larder materialize` as a process of its own, as a
	// schedule would, so that its work does not slow the load's client.
	materialize := func() (time.Duration, error) {
		cmd := exec.CommandContext(ctx, os.Args[0], "--redis", redis.Addr, "-c", config, "materialize")
		cmd.Env = append(os.Environ(), processEnv+"=1")
		start := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			return 0, fmt.Errorf("materialize: %w:\n%s", err, out)
		}
		return time.Since(start), nil
	}
	took, err := materialize()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the demo shop materialized in %s", took.Round(time.Millisecond))

	srv := startLarder(t, "--redis", redis.Addr, "-c", config, "serve", "--listen", "127.0.0.1:0", "--watch-models=false")
	serving := regexp.MustCompile(`serving larder\.v1\.FeatureService for project \S+ on (\S+)`)
	addr := waitFor(t, 60*time.Second, "serve to listen", func() (string, bool) {
		if m := serving.FindStringSubmatch(srv.out.String()); m != nil {
			return m[1], true
		}
		return "", false
	})
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := larderv1.NewFeatureServiceClient(conn)
	pid := srv.cmd.Process.Pid

	users, items := ds.SampleUsers(ds.Users), ds.SampleItems(ds.Items)
	var gets, ranks soakLatencies
	loadCtx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for i := range soakGetCallers {
		rng := rand.New(rand.NewPCG(uint64(i), 3))
		req := &larderv1.GetFeaturesRequest{Features: []string{"user_profile:*", "user_activity:*"}, Keys: make([]*larderv1.EntityKey, 10)}
		wg.Go(func() {
			paced(loadCtx, soakGetRate/soakGetCallers, func() {
				for k := range req.Keys {
					req.Keys[k] = int64Key(users[rng.IntN(len(users))])
				}
				start := time.Now()
				_, err := client.GetFeatures(loadCtx, req)
				if loadCtx.Err() == nil {
					gets.add(time.Since(start), err)
				}
			})
		})
	}
	for i := range soakRankCallers {
		rng := rand.New(rand.NewPCG(uint64(i), 4))
		req := &larderv1.RankRequest{
			Ranker: demo.RankerName, CandidateKeys: make([]*larderv1.EntityKey, 100), TopK: 10,
			RequestFeatures: map[string]*larderv1.Value{"hour_of_day": {Kind: &larderv1.Value_Int64Value{Int64Value: 12}}},
		}
		wg.Go(func() {
			paced(loadCtx, soakRankRate/soakRankCallers, func() {
				req.ContextKey = int64Key(users[rng.IntN(len(users))])
				for k, j := range rng.Perm(len(items))[:len(req.CandidateKeys)] {
					req.CandidateKeys[k] = int64Key(items[j])
				}
				start := time.Now()
				_, err := client.Rank(loadCtx, req)
				if loadCtx.Err() == nil {
					ranks.add(time.Since(start), err)
				}
			})
		})
	}
	defer func() {
		stopLoad()
		wg.Wait()
	}()

	// The publishes run beside the load, one at a time, half-way through
	// each interval: with windows of the interval, each window holds one.
	var (
		pubMu     sync.Mutex
		publishes []time.Duration
		pubErr    error
	)
	wg.Go(func() {
		next := time.Now().Add(publishEvery / 2)
		for {
			select {
			case <-loadCtx.Done():
				return
			case <-time.After(time.Until(next)):
			}
			next = next.Add(publishEvery)
			took, err := materialize()
			if loadCtx.Err() != nil {
				return
			}
			pubMu.Lock()
			if err != nil && pubErr == nil {
				pubErr = err
			}
			if err == nil {
				publishes = append(publishes, took)
			}
			pubMu.Unlock()
		}
	})

	type figures struct {
		rssKB               int
		getP99, rankP99     time.Duration
		getCalls, rankCalls int
	}
	take := func() figures {
		f := figures{rssKB: procStatus(t, pid, "VmRSS")}
		f.getP99, f.getCalls = gets.take()
		f.rankP99, f.rankCalls = ranks.take()
		return f
	}
	mb := func(kb int) string { return fmt.Sprintf("%.1f MB", float64(kb)/1024) }
	began := time.Now()
	gets.take()
	ranks.take()
	var first, last figures
	for i := 1; ; i++ {
		next := began.Add(time.Duration(i) * window)
		if next.After(began.Add(duration)) {
			next = began.Add(duration)
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(time.Until(next)):
		}
		f := take()
		if i == 1 {
			first = f
		}
		last = f
		pubMu.Lock()
		n := len(publishes)
		pubMu.Unlock()
		t.Logf("%s: server RSS %s; GetFeatures p99 %s (%d calls), Rank p99 %s (%d calls); %d publishes so far",
			time.Since(began).Round(time.Second), mb(f.rssKB), bench.FormatLatency(f.getP99), f.getCalls, bench.FormatLatency(f.rankP99), f.rankCalls, n)
		if !next.Before(began.Add(duration)) {
			break
		}
	}
	stopLoad()
	wg.Wait()
	elapsed := time.Since(began)

	pubMu.Lock()
	defer pubMu.Unlock()
	var slowest time.Duration
	for _, d := range publishes {
		slowest = max(slowest, d)
	}
	t.Logf("soak of %s (figures over the first and the last %s): server RSS %s at the start, %s at the end; "+
		"GetFeatures p99 %s at the start, %s at the end; Rank p99 %s at the start, %s at the end; "+
		"%d GetFeatures and %d Rank requests, %d and %d errors; %d publishes of every view, every %s, the slowest %s",
		elapsed.Round(time.Second), window, mb(first.rssKB), mb(last.rssKB),
		bench.FormatLatency(first.getP99), bench.FormatLatency(last.getP99), bench.FormatLatency(first.rankP99), bench.FormatLatency(last.rankP99),
		gets.requests, ranks.requests, gets.errors, ranks.errors, len(publishes), publishEvery, slowest.Round(time.Millisecond))
	if gets.firstErr != nil {
		t.Errorf("GetFeatures failed %d times; the first: %v", gets.errors, gets.firstErr)
	}
	if ranks.firstErr != nil {
		t.Errorf("Rank failed %d times; the first: %v", ranks.errors, ranks.firstErr)
	}
	if pubErr != nil {
		t.Errorf("a publish failed: %v", pubErr)
	}
}

// paced calls call rate times a second until ctx ends. When a call ends
// after the next one was due, the next one starts at once, and the schedule
// starts again from there: missed calls are not made up in a burst.
func paced(ctx context.Context, rate int, call func()) {
	interval := time.Second / time.Duration(rate)
	next := time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		call()
		next = next.Add(interval)
		if now := time.Now(); next.Before(now) {
			next = now
		}
		timer.Reset(time.Until(next))
	}
}
