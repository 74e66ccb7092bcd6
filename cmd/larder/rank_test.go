package main

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/demo"
	"github.com/larder-dev/larder/redistest"
)

// TestRank calls a served demo project through larder rank: the stored list,
// given candidates with --explain, and the mistakes an operator makes.
func TestRank(t *testing.T) {
	t.Parallel()
	ds, config := demoProject(t)
	redis := redistest.Start(t)
	mustSucceed(t, larderAt(t, t.Context(), t0, "--redis", redis.Addr, "-c", config, "materialize"), "materialize")
	srv := startServe(t, "--redis", redis.Addr, "-c", config, "serve", "--listen", "127.0.0.1:0")
	user := strconv.FormatInt(ds.SampleUsers(1)[0], 10)
	rank := func(args ...string) result {
		return larderAt(t, t.Context(), t0, append([]string{"-c", config, "rank", "--addr", srv.addr}, args...)...)
	}

	t.Run("stored list", func(t *testing.T) {
		res := rank(demo.RankerName, user, "--request", "hour_of_day=20", "--top-k", "3")
		mustSucceed(t, res, "rank")
		if !strings.Contains(res.stdout, "RANK") || strings.Count(res.stdout, "\n") != 5 {
			t.Errorf("rank printed:\n%s\nwant a header line, a table header and 3 candidates", res.stdout)
		}
	})

	t.Run("explain", func(t *testing.T) {
		items := ds.SampleItems(2)
		cands := strconv.FormatInt(items[0], 10) + "," + strconv.FormatInt(items[1], 10)
		res := rank(demo.RankerName, user, "--candidates", cands, "--request", "hour_of_day=20", "--explain")
		mustSucceed(t, res, "rank --explain")
		for _, want := range []string{"INPUT", "user_profile:is_premium", "request:hour_of_day", "20 (request)"} {
			if !strings.Contains(res.stdout, want) {
				t.Errorf("rank --explain printed:\n%s\nwant %q in it", res.stdout, want)
			}
		}
	})

	t.Run("json", func(t *testing.T) {
		res := rank(demo.RankerName, user, "--request", "hour_of_day=8", "--json")
		mustSucceed(t, res, "rank --json")
		if !strings.Contains(res.stdout, `"modelVersion"`) {
			t.Errorf("rank --json printed:\n%s\nwant a JSON response", res.stdout)
		}
	})

	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown ranker", []string{"nope", user}, `unknown ranker "nope"`},
		{"bad context key", []string{demo.RankerName, "abc"}, "context key: entity user is keyed by int64 user_id"},
		{"bad candidate", []string{demo.RankerName, user, "--candidates", "1,x"}, "--candidates: entity item"},
		{"unknown request feature", []string{demo.RankerName, user, "--request", "weekday=3"}, "no such request feature (it takes: hour_of_day"},
		{"bad request value", []string{demo.RankerName, user, "--request", "hour_of_day=noon"}, "hour_of_day=noon"},
		{"missing request feature", []string{demo.RankerName, user}, "InvalidArgument"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res := rank(tt.args...)
			if res.code == 0 || !strings.Contains(res.stderr, tt.want) {
				t.Errorf("rank %v: exit %d, stderr %q; want a failure saying %q", tt.args, res.code, res.stderr, tt.want)
			}
		})
	}
}

// TestRankAnotherProjectsServer ranks with the demo's project file at the
// server of another project: the server's answer names its project, and
// the command says which project's server to pass.
func TestRankAnotherProjectsServer(t *testing.T) {
	t.Parallel()
	_, config := demoProject(t)
	tiny := newTinyProject(t)
	srv := startServe(t, "--redis", tiny.redis.Addr, "-c", tiny.config, "serve", "--listen", "127.0.0.1:0")
	r := larderAt(t, t.Context(), t0, "-c", config, "rank", "--addr", srv.addr, demo.RankerName, "1", "--request", "hour_of_day=20")
	want := fmt.Sprintf("larder: rank home_feed at %s: InvalidArgument: ranker: unknown ranker \"home_feed\" (the server's project tiny has no rankers); "+
		"the project file %s is project shop: pass --addr the address of a server of project shop\n", srv.addr, config)
	if r.code != 1 || r.stderr != want {
		t.Errorf("rank at another project's server: exit %d, stderr\n%s\nwant\n%s", r.code, r.stderr, want)
	}
}

// TestRankNoServer ranks at an address where nothing listens: the command
// says so and what to do, rather than pointing at TLS.
func TestRankNoServer(t *testing.T) {
	t.Parallel()
	_, config := demoProject(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	r := larderAt(t, t.Context(), t0, "-c", config, "rank", "--addr", addr, demo.RankerName, "1", "--request", "hour_of_day=20")
	if r.code != 1 || !strings.Contains(r.stderr, "connection refused\"; nothing listens at --addr: start `larder serve` there") || strings.Contains(r.stderr, "--tls") {
		t.Errorf("rank at %s, where nothing listens: exit %d, stderr\n%s\nwant a failure that says nothing listens there, and no TLS hint", addr, r.code, r.stderr)
	}

	// Without --addr, the address is the project file's.
	st := status.New(codes.Unavailable, `connection error: desc = "transport: Error while dialing: dial tcp 127.0.0.1:50051: connect: connection refused"`)
	if got := (clientOptions{}).hint(st, &larder.Project{}); !strings.Contains(got, "nothing listens there (server.listen of the project file): start `larder serve`, or pass --addr") {
		t.Errorf("hint for a refused connection to server.listen = %q", got)
	}
}
