package main

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	larderclient "github.com/larder-dev/larder/client"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
	"github.com/larder-dev/larder/redistest"
)

// restartEntities is the number of users of the restart test's view.
const restartEntities = 2000

// answerLog is what the clients of TestServeRedisRestartedEmpty saw, by
// phase.
type answerLog struct {
	mu sync.Mutex
	// restarted is set once Redis is stopped, to start again empty: a
	// call started after it must not carry the vanished version.
	restarted time.Time
	// ok counts the OK answers by the version they carry.
	ok map[int64]int
	// codes counts the errors by status code, of calls started after
	// Redis was stopped.
	codes map[codes.Code]int
	// run counts the OK answers of the newest version in a row, since the
	// last answer that was not one.
	run      int
	newest   int64
	gens     map[int64][]int64 // the generation ids each version was served under
	firstBad error
}

func (a *answerLog) bad(err error) {
	if a.firstBad == nil {
		a.firstBad = err
	}
}

// TestServeRedisRestartedEmpty runs `larder serve` against a redis-server
// under clients that call GetFeatures without pause, stops the
// redis-server, and starts it again empty, as a restart without
// persistence does. No OK answer of a call started after the stop may carry a value of the generation
// that vanished (each version of the source has its own values), nor a
// key NOT_FOUND; the other answers are errors with a status that says the
// store is unavailable or has no generation. Once the view is materialized
// again, from a new version of the source, the same server serves the new
// values by itself.
func TestServeRedisRestartedEmpty(t *testing.T) {
	t.Parallel() // mostly waiting on child processes and servers
	redis := redistest.Start(t)
	sp := newSchedProjectGrace(t, redis.Addr, "10m", "", trialView, 1, 1)
	source := filepath.Join(sp.dir, "data", "events.parquet")
	eventAt := time.Now().Add(-time.Hour).Truncate(time.Second)
	writeVersion := func(v int) {
		rows := make([]eventRow, restartEntities)
		for u := range rows {
			rows[u] = eventRow{UserID: int64(u), TS: eventAt, X: float64(v)*versionScale + float64(u), N: int64(v)}
		}
		writeParquet(t, source, rows)
	}
	writeVersion(1)
	mustSucceed(t, sp.larder(t, "materialize", "trial"), "materialize version 1")
	srv := startServe(t, "-c", sp.config, "serve", "--listen", "127.0.0.1:0")
	conn, err := grpc.NewClient(srv.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := larderv1.NewFeatureServiceClient(conn)

	log := &answerLog{ok: map[int64]int{}, codes: map[codes.Code]int{}, gens: map[int64][]int64{}, newest: 1}
	ctx, stop := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() { restartClient(ctx, client, log, uint64(i)) })
	}
	defer func() {
		stop()
		wg.Wait()
	}()
	okOf := func(v int64, n int) func() (bool, bool) {
		return func() (bool, bool) {
			log.mu.Lock()
			defer log.mu.Unlock()
			return true, log.newest == v && log.run >= n
		}
	}
	waitFor(t, 60*time.Second, "200 OK answers of version 1 in a row", okOf(1, 200))

	// Redis down, then up again with nothing in it.
	errorsSeen := func(n int) func() (bool, bool) {
		return func() (bool, bool) {
			log.mu.Lock()
			defer log.mu.Unlock()
			sum := 0
			for _, c := range log.codes {
				sum += c
			}
			return true, sum >= n
		}
	}
	redis.Stop()
	log.mu.Lock()
	log.restarted, log.newest, log.run = time.Now(), 2, 0
	log.mu.Unlock()
	waitFor(t, 60*time.Second, "50 answers while Redis is down", errorsSeen(50))
	log.mu.Lock()
	down := maps.Clone(log.codes)
	log.mu.Unlock()
	redis.Restart()
	waitFor(t, 60*time.Second, "50 answers once Redis is back, empty", errorsSeen(100))

	writeVersion(2)
	remat := time.Now()
	mustSucceed(t, sp.larder(t, "materialize", "trial"), "materialize version 2")
	waitFor(t, 60*time.Second, "200 OK answers of version 2 in a row, once it is materialized", okOf(2, 200))
	resumed := time.Since(remat)
	stop()
	wg.Wait()
	select {
	case code := <-srv.exit:
		t.Fatalf("serve exited with code %d:\n%s", code, srv.log())
	default:
	}

	log.mu.Lock()
	defer log.mu.Unlock()
	if log.firstBad != nil {
		t.Error(log.firstBad)
	}
	counts := func(m map[codes.Code]int) []string {
		var out []string
		for _, c := range slices.Sorted(maps.Keys(m)) {
			out = append(out, fmt.Sprintf("%s %d", c, m[c]))
		}
		return out
	}
	after := maps.Clone(log.codes)
	for c, n := range down {
		after[c] -= n
	}
	t.Logf("OK answers: %d of version 1 (generations %v), %d of version 2 (generations %v); errors while Redis was down: %v, "+
		"once it was back empty: %v; serving resumed %s after the second materialize began, with no restart of serve",
		log.ok[1], log.gens[1], log.ok[2], log.gens[2], counts(down), counts(after), resumed.Round(time.Millisecond))
}

// restartClient calls GetFeatures for 10 random users at a time until ctx
// ends, and checks each answer against log.
func restartClient(ctx context.Context, client larderv1.FeatureServiceClient, log *answerLog, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 2))
	req := &larderv1.GetFeaturesRequest{Features: []string{"trial:*"}, Keys: make([]*larderv1.EntityKey, 10)}
	for ctx.Err() == nil {
		for i := range req.Keys {
			req.Keys[i] = int64Key(rng.Int64N(restartEntities))
		}
		began := time.Now()
		// A bound for a call that would hang, far above any answer's time;
		// the server's own deadline is shorter.
		callCtx, cancel := context.WithTimeout(ctx, time.Minute)
		resp, err := client.GetFeatures(callCtx, req)
		cancel()
		if ctx.Err() != nil {
			return
		}
		log.mu.Lock()
		after := !log.restarted.IsZero() && began.After(log.restarted)
		if err != nil {
			log.run = 0
			code := status.Code(err)
			if after {
				log.codes[code]++
			}
			switch code {
			case codes.Unavailable, codes.FailedPrecondition, codes.DeadlineExceeded:
			default:
				log.bad(fmt.Errorf("an answer failed with %s, not UNAVAILABLE, FAILED_PRECONDITION or DEADLINE_EXCEEDED: %v", code, err))
			}
			log.mu.Unlock()
			continue
		}
		version, gen, cerr := answerVersion(resp, req.Keys)
		switch {
		case cerr != nil:
			log.bad(fmt.Errorf("an OK answer (call started %s the restart): %w", map[bool]string{false: "before", true: "after"}[after], cerr))
		case after && version == 1:
			log.bad(fmt.Errorf("an OK answer of a call started after the restart carries the vanished version 1 (generation %d)", gen))
		case version > log.newest:
			log.bad(fmt.Errorf("an OK answer carries version %d, not yet materialized", version))
		}
		log.ok[version]++
		if !slices.Contains(log.gens[version], gen) {
			log.gens[version] = append(log.gens[version], gen)
		}
		if version == log.newest {
			log.run++
		} else {
			log.run = 0
		}
		log.mu.Unlock()
	}
}

// answerVersion returns the source version of an OK answer and the
// generation it was read from; an error when a key is not found, or when
// rows or columns disagree on the version.
func answerVersion(resp *larderv1.GetFeaturesResponse, keys []*larderv1.EntityKey) (version, gen int64, err error) {
	if g := resp.GetGenerations(); len(g) == 1 {
		gen = g[0].GetGeneration()
	}
	f, err := larderclient.NewFeatures(resp)
	if err != nil {
		return 0, gen, err
	}
	ix, okx := f.Column("trial:x")
	in, okn := f.Column("trial:n")
	if !okx || !okn {
		return 0, gen, fmt.Errorf("columns %v lack trial:x or trial:n", columnNames(resp))
	}
	version = -1
	for i := range f.Rows() {
		u := keys[i].GetInt64Value()
		if f.Status(ix, i) != larderv1.FeatureStatus_FEATURE_STATUS_PRESENT || f.Status(in, i) != larderv1.FeatureStatus_FEATURE_STATUS_PRESENT {
			return 0, gen, fmt.Errorf("generation %d: user %d is %s", gen, u, f.Status(ix, i))
		}
		x, n := f.Float64(ix, i), f.Int64(in, i)
		if x != float64(n)*versionScale+float64(u) || (version >= 0 && n != version) {
			return 0, gen, fmt.Errorf("generation %d: user %d has x %v, n %d, in an answer of version %d", gen, u, x, n, version)
		}
		version = n
	}
	return version, gen, nil
}
