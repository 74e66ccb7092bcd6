package main

import (
	"context"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/ingest"
	"github.com/larder-dev/larder/redistest"
)

const ingestViews = `  - name: user_last
    kind: latest
    entity: user
    source: events
    features:
      - {name: x, type: float64}
      - {name: n, type: int64}
streams:
  - name: clicks
    view: user_last
    redis_stream: clicks
`

// TestIngestKilled SIGKILLs a `larder ingest` process while it applies a
// stream, then starts another: it claims what the dead one left pending,
// and at the end every event is applied, with its value, none is pending
// and none went to the dead-letter stream.
func TestIngestKilled(t *testing.T) {
	t.Parallel() // mostly waiting on child processes and servers
	if testing.Short() {
		t.Skip("starts larder processes")
	}
	srv := redistest.Start(t)
	sp := newSchedProject(t, srv.Addr, "", ingestViews, 200, 20)
	mustSucceed(t, sp.larder(t, "materialize", "user_last"), "materialize")
	client := srv.Client()
	ctx := context.Background()
	const events = 30_000
	now := time.Now()
	for lo := 0; lo < events; lo += 1000 {
		pipe := client.Pipeline()
		for i := lo; i < lo+1000; i++ {
			pipe.XAdd(ctx, &redis.XAddArgs{Stream: "clicks", Values: []any{
				"user_id", strconv.Itoa(1_000_000 + i), "ts", strconv.FormatInt(now.UnixMilli(), 10), "n", strconv.Itoa(i), "x", "0.5"}})
		}
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatal(err)
		}
	}
	s := sp.p.Stream("clicks")
	lag := func() ingest.Lag {
		l, err := ingest.RedisLag(ctx, client, s, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return l
	}

	views := mustOutput(t, sp.larder(t, "views"))
	if !strings.Contains(views, "STREAM LAG") || !strings.Contains(views, "clicks 30000 (") {
		t.Errorf("larder views does not show the stream's lag:\n%s", views)
	}
	first := sp.start(t, "ingest", "--claim-idle", "300ms", "--status-every", "1h")
	waitFor(t, 60*time.Second, "the first ingest to apply some events", func() (string, bool) {
		l := lag()
		return "", l.Entries < events-2000
	})
	first.stop(t, syscall.SIGKILL)
	atKill := lag()
	t.Logf("killed with %d entries not delivered and %d pending", atKill.Entries, atKill.Pending)

	second := sp.start(t, "ingest", "--claim-idle", "300ms", "--status-every", "1h")
	waitFor(t, 120*time.Second, "the second ingest to apply the rest", func() (string, bool) {
		l := lag()
		return "", l.Entries == 0 && l.Pending == 0
	})
	second.stop(t, syscall.SIGTERM)
	if out := mustOutput(t, sp.larder(t, "views", "--json")); !strings.Contains(out, `"streams":[{"stream":"clicks","source":"redis stream clicks","lag_entries":0,"lag_seconds":0,"pending":0}]`) {
		t.Errorf("larder views --json does not show the stream caught up:\n%s", out)
	}
	if !strings.Contains(second.out.String(), "claimed entries a consumer left pending") && atKill.Pending > 0 {
		t.Errorf("the second ingest did not say it claimed the dead one's entries:\n%s", second.out.String())
	}

	st := sp.store(t)
	v := sp.p.View("user_last")
	l := &larder.Lookup{View: v}
	for i := range events {
		l.Keys = append(l.Keys, larder.Int64Key(int64(1_000_000+i)))
	}
	if err := st.Read(ctx, []*larder.Lookup{l}); err != nil {
		t.Fatal(err)
	}
	missing, wrong := 0, 0
	for i := range events {
		switch {
		case !l.Found[i]:
			missing++
		case l.Rows[i].Values[1].Int64() != int64(i):
			wrong++
		}
	}
	if missing > 0 || wrong > 0 {
		t.Errorf("%d of %d events missing, %d with another value", missing, events, wrong)
	}
	if n := client.XLen(ctx, s.DeadLetter).Val(); n != 0 {
		t.Errorf("%d events in the dead-letter stream, want none", n)
	}
}
