package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/client"
	"github.com/larder-dev/larder/models"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
	"github.com/larder-dev/larder/server"
	"github.com/larder-dev/larder/store"
)

// The synthetic world of larder bench.
const (
	benchProject    = "larderbench"
	benchFeatures   = 20 // float64 features per view
	benchRankInputs = 10 // model inputs taken from each of the two views
	benchCandidates = 100
	benchHidden     = 64 // the example ranker's hidden layer
	benchRanker     = "rerank"
	benchUserView   = "user_features"
	benchItemView   = "item_features"
	// benchBatched is the --batching ranker: benchRanker's model and
	// inputs, with batching.
	benchBatched = "rerank_batched"
)

// The calls larder bench measures, in the order of its tables:
// the floors first, then larder's own calls.
const (
	callEmpty      = "empty-call"
	callRedis1     = "redis-1"
	callRedis101   = "redis-101"
	callModel      = "model-100"
	callServed1    = "grpc+redis-1"
	callServedRank = "grpc+redis-101+model-100"
	callGet1       = "GetFeatures-1x20"
	callGet100     = "GetFeatures-100x20"
	callRank       = "Rank-1+100"
	benchCallCount = 9
	// callRankBatched is measured with --batching only.
	callRankBatched = "Rank-batched"
)

// benchLegend says what each call is, below the table.
var benchLegend = [benchCallCount][2]string{
	{callEmpty, "floor: gRPC health Check through the same server, interceptors and connections"},
	{callRedis1, "floor: go-redis pipeline of 1 HGET (the bucket hash and field the store reads for a random user)"},
	{callRedis101, "floor: go-redis pipeline of 101 HGETs (1 random user + 100 random items, as Rank reads)"},
	{callModel, "floor: Model.Score of a prepared 100×20 float32 batch on the server's own ONNX Runtime session"},
	{callServed1, "composed floor: a gRPC call through the same server whose handler runs redis-1's pipeline and answers with the row's bytes"},
	{callServedRank, "composed floor: a gRPC call through the same server whose handler runs redis-101's pipeline, then model-100's batch"},
	{callGet1, "GetFeatures of 1 random user × user_features:* (20 float64)"},
	{callGet100, "GetFeatures of 100 random users × user_features:* (20 float64)"},
	{callRank, "Rank of 100 random items for 1 random user: 101 reads, a 100×20 model input, the ranker's MLP, top 10"},
}

// benchHeavyHidden are the hidden layers of the --heavy ranker's MLP.
var benchHeavyHidden = []int{256, 256}

// The goals the serving path is held to, each a ratio measured in one run.
const (
	goalLatencyRatio    = 1.5 // larder p50 at most 1.5× the sum of its floors' p50
	goalThroughputRatio = 0.6 // GetFeatures RPS at least 60% of the empty call's
)

// benchOptions are the flags of larder bench.
type benchOptions struct {
	duration    time.Duration
	warmup      time.Duration
	rounds      int
	concurrency []int
	conns       int
	users       int
	items       int
	quick       bool
	markdown    bool
	cpuProfile  string
	profileCall string
	// batching adds the Rank-batched call: Rank of a second ranker, the
	// same model with these batching settings.
	batching bool
	batch    larder.Batching
	// heavy scores with an MLP of two 256-wide hidden layers.
	heavy bool
}

// hidden returns the hidden layers of the bench ranker's MLP.
func (o benchOptions) hidden() []int {
	if o.heavy {
		return benchHeavyHidden
	}
	return []int{benchHidden}
}

// mlpName names the bench ranker's MLP, such as 20→64→1.
func (o benchOptions) mlpName() string {
	parts := []string{strconv.Itoa(2 * benchRankInputs)}
	for _, h := range o.hidden() {
		parts = append(parts, strconv.Itoa(h))
	}
	return strings.Join(append(parts, "1"), "→")
}

func (a *app) benchCommand() *cobra.Command {
	o := benchOptions{}
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Load-test GetFeatures and Rank, each next to its floor",
		Long: `bench measures the serving path under load, and the floors under it, in one
run on this machine. It builds its own world: a redis-server child process on
a free loopback port (or the server named by --redis), a synthetic project of
users and items with 20 float64 features each written as generations, a
ranker over 10 user and 10 item features scored by a random 20→64→1 MLP in
ONNX Runtime, and the server that larder serve runs, on 127.0.0.1:0.

For each call and each concurrency, that many goroutines call as fast as they
can, with random keys, over several gRPC connections, for --warmup and then
for --duration; every latency is recorded and the percentiles are exact. The
floors are an empty gRPC call through the same server, the raw Redis reads
of the same bucket hashes and fields from Go, and a raw ONNX Runtime call on
a 100-row batch. The composed floors put them together as a larder call
does: a gRPC method of the same server whose handler runs those raw reads
(and, for Rank, the model) and answers. The ratios at the end are larder's
figures over the sum of their floors, next to the goals they are held to,
and over the composed floors, which is larder's own cost.

At each concurrency the calls take turns: the warm-up and the measured time
of each call are cut into --rounds slices, run round-robin, so that a burst
of work by another process falls on the floors and on larder's calls alike.
The "others" column says how much of the CPU other processes took.

The --config flag is ignored. With --redis, bench writes keys under
larder:` + benchProject + `: on that server and deletes them when it ends.`,
		Example: `  larder bench                          # about three minutes
  larder bench --quick                  # a few seconds: a smoke test
  larder bench --concurrency 16 --duration 10s --cpuprofile rank.pprof
  larder bench --concurrency 64 --cpuprofile get.pprof --profile-call GetFeatures-1x20`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.quick {
				quick := map[string]func(){
					"duration":    func() { o.duration = 200 * time.Millisecond },
					"warmup":      func() { o.warmup = 50 * time.Millisecond },
					"rounds":      func() { o.rounds = 2 },
					"concurrency": func() { o.concurrency = []int{1, 4} },
					"users":       func() { o.users = 2000 },
					"items":       func() { o.items = 500 },
				}
				for name, set := range quick {
					if !cmd.Flags().Changed(name) {
						set()
					}
				}
			}
			if err := o.check(); err != nil {
				return err
			}
			return a.runBench(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.DurationVar(&o.duration, "duration", 5*time.Second, "how long each call is measured at each concurrency")
	f.DurationVar(&o.warmup, "warmup", time.Second, "how long each call runs before it is measured")
	f.IntVar(&o.rounds, "rounds", 5, "slices in which the calls at one concurrency take turns")
	f.IntSliceVar(&o.concurrency, "concurrency", []int{1, 16, 64}, "the numbers of concurrent callers, comma-separated")
	f.IntVar(&o.conns, "conns", 8, "gRPC client connections the callers share")
	f.IntVar(&o.users, "users", 100_000, "users in the synthetic project")
	f.IntVar(&o.items, "items", 10_000, "items in the synthetic project")
	f.BoolVar(&o.quick, "quick", false, "a smoke test: 200ms per call, 50ms warm-up, 2 rounds, concurrency 1 and 4, 2000 users, 500 items (flags given explicitly win)")
	f.BoolVar(&o.markdown, "markdown", false, "print the tables as Markdown")
	f.BoolVar(&o.batching, "batching", false, "also measure Rank-batched: Rank of a second ranker with the same model and batching (max_delay, max_rows, max_queue from the --batch-* flags, or their defaults)")
	f.DurationVar(&o.batch.MaxDelay, "batch-max-delay", 0, "batching.max_delay of the Rank-batched ranker (0: the default, "+larder.DefaultBatchMaxDelay.String()+")")
	f.IntVar(&o.batch.MaxRows, "batch-max-rows", 0, "batching.max_rows of the Rank-batched ranker (0: the default, "+strconv.Itoa(larder.DefaultBatchMaxRows)+")")
	f.IntVar(&o.batch.MaxQueue, "batch-max-queue", 0, "batching.max_queue of the Rank-batched ranker (0: the default, "+strconv.Itoa(larder.DefaultBatchMaxQueue)+")")
	f.BoolVar(&o.heavy, "heavy", false, "score with a heavier MLP, 20→256→256→1, instead of the example's 20→64→1")
	f.StringVar(&o.cpuProfile, "cpuprofile", "", "after the measurements, run the --profile-call call once more at each concurrency and write a CPU profile of the process (client and server) to this file")
	f.StringVar(&o.profileCall, "profile-call", callRank, "the call --cpuprofile profiles, one of the names in the table (such as "+callGet1+" or "+callEmpty+")")
	return cmd
}

// callNames returns the names of the calls bench measures with o.
func (o benchOptions) callNames() []string {
	names := make([]string, 0, len(benchLegend)+1)
	for _, l := range benchLegend {
		names = append(names, l[0])
	}
	if o.batching {
		names = append(names, callRankBatched)
	}
	return names
}

// check returns an error naming the first flag with a value bench cannot use.
func (o benchOptions) check() error {
	switch {
	case o.duration <= 0:
		return fmt.Errorf("--duration %s: must be positive", o.duration)
	case o.warmup < 0:
		return fmt.Errorf("--warmup %s: must not be negative", o.warmup)
	case len(o.concurrency) == 0:
		return errors.New("--concurrency: give at least one number of callers, such as 1,16,64")
	case o.rounds < 1:
		return fmt.Errorf("--rounds %d: must be at least 1", o.rounds)
	case o.conns < 1:
		return fmt.Errorf("--conns %d: must be at least 1", o.conns)
	case o.users < 1 || o.items < 1:
		return fmt.Errorf("--users %d, --items %d: each must be at least 1", o.users, o.items)
	case o.batch.MaxDelay < 0 || o.batch.MaxRows < 0 || o.batch.MaxQueue < 0:
		return fmt.Errorf("--batch-max-delay %s, --batch-max-rows %d, --batch-max-queue %d: none may be negative", o.batch.MaxDelay, o.batch.MaxRows, o.batch.MaxQueue)
	}
	if names := o.callNames(); !slices.Contains(names, o.profileCall) {
		return fmt.Errorf("--profile-call %q: no such call; the calls are %s", o.profileCall, strings.Join(names, ", "))
	}
	for _, c := range o.concurrency {
		if c < 1 || c > 10_000 {
			return fmt.Errorf("--concurrency %d: each number of callers must be between 1 and 10000", c)
		}
	}
	return nil
}

// runBench builds the bench world, measures every cell and prints the tables.
func (a *app) runBench(ctx context.Context, o benchOptions) error {
	addr, where := a.redisAddr, "given by --redis"
	meter := cpuMeter{self: os.Getpid()}
	if addr == "" {
		child, err := startRedisChild(ctx)
		if err != nil {
			return err
		}
		defer child.stop()
		addr, where = child.addr, "started by bench"
		meter.redis = child.cmd.Process.Pid
	}
	w, err := a.newBenchWorld(ctx, addr, o)
	if w != nil {
		defer w.close(ctx, a.stderr, a.redisAddr != "")
	}
	if err != nil {
		return err
	}

	calls := w.calls()
	var (
		results []cellResult
		run     cpuSpan
	)
	first := meter.read()
	for _, conc := range o.concurrency {
		cells := make([]*cell, len(calls))
		for i, call := range calls {
			cells[i] = newCell(call, conc, o.duration)
		}
		for range o.rounds {
			for _, c := range cells {
				before := meter.read()
				if err := c.run(ctx, o.warmup/time.Duration(o.rounds), o.duration/time.Duration(o.rounds)); err != nil {
					return fmt.Errorf("bench: %s at concurrency %d: %w", c.call.name, conc, err)
				}
				c.cpu.add(before, meter.read())
			}
		}
		for _, c := range cells {
			r, err := c.result()
			if err != nil {
				return fmt.Errorf("bench: %s at concurrency %d: %w", c.call.name, conc, err)
			}
			fmt.Fprintf(a.stderr, "  %-18s ×%-4d %8.0f RPS  p50 %s\n", r.call, conc, r.rps, formatLatency(r.p50))
			results = append(results, r)
		}
	}
	run.add(first, meter.read())
	// The table lists each call at every concurrency.
	slices.SortStableFunc(results, func(x, y cellResult) int {
		return slices.IndexFunc(calls, func(c benchCall) bool { return c.name == x.call }) -
			slices.IndexFunc(calls, func(c benchCall) bool { return c.name == y.call })
	})

	if o.cpuProfile != "" {
		i := slices.IndexFunc(calls, func(c benchCall) bool { return c.name == o.profileCall })
		if err := profileCall(ctx, calls[i], o, a.stderr); err != nil {
			return err
		}
	}
	share := run.share()

	out := a.stdout
	fmt.Fprintf(out, "larder bench: %d users, %d items, %d float64 features per view; ranker %s: %d inputs (%d user + %d item), MLP %s in ONNX Runtime %s\n",
		o.users, o.items, benchFeatures, benchRanker, 2*benchRankInputs, benchRankInputs, benchRankInputs, o.mlpName(), w.srv.runtime.ORTVersion())
	if o.batching {
		b := w.project.Ranker(benchBatched).Batching
		fmt.Fprintf(out, "ranker %s: the same model, batching max_delay %s, max_rows %d, max_queue %d\n", benchBatched, b.MaxDelay, b.MaxRows, b.MaxQueue)
	}
	fmt.Fprintf(out, "machine: %s; redis-server %s at %s (%s)\n", machineLine(), w.redisVersion(ctx), addr, where)
	fmt.Fprintf(out, "each cell: %s warm-up, then %s measured, in %d rounds taken in turn with the other calls; %d gRPC connections; client, server and Redis share the machine's cores\n",
		o.warmup, o.duration, o.rounds, o.conns)
	if share.ok {
		redis := "redis-server"
		if meter.redis == 0 {
			redis = "the Redis server (counted with other processes)"
		}
		fmt.Fprintf(out, "CPU over the cells: bench (client and server) %s, %s %s, other processes %s, idle %s\n",
			percent(share.self), redis, percent(share.redis), percent(share.others), percent(share.idle))
	}
	fmt.Fprintln(out)
	printTable(out, o.markdown, resultTable(results))
	fmt.Fprintln(out)
	printTable(out, o.markdown, ratioTable(results, o.concurrency))
	fmt.Fprintln(out)
	if o.batching {
		printTable(out, o.markdown, batchingTable(results, o.concurrency))
		fmt.Fprintln(out)
	}
	legend := benchLegend[:]
	if o.batching {
		legend = append(legend, [2]string{callRankBatched, "the same Rank through ranker " + benchBatched + ": the same model, with batching"})
	}
	legend = append(legend, [2]string{"others", "the share of the machine's CPU that other processes used during the cell; more than a few percent disturbs its figures"})
	width := 0
	for _, l := range legend {
		width = max(width, len(l[0]))
	}
	for _, l := range legend {
		if o.markdown {
			fmt.Fprintf(out, "- `%s`: %s\n", l[0], l[1])
		} else {
			fmt.Fprintf(out, "  %-*s %s\n", width, l[0], l[1])
		}
	}
	return nil
}

func percent(f float64) string { return strconv.FormatFloat(100*f, 'f', 0, 64) + "%" }

// cpuMeter reads from /proc the CPU time the machine, the bench process and
// its redis-server child (pid 0: none) have used, so that the tables can say
// how much of the machine other processes took.
type cpuMeter struct{ self, redis int }

// cpuTimes are cumulative clock ticks; ok is false when /proc could not be
// read.
type cpuTimes struct {
	ok                       bool
	total, idle, self, redis int64
}

// cpuSpan adds up the clock ticks of spans of time.
type cpuSpan struct {
	bad                      bool // a span could not be measured
	total, idle, self, redis int64
}

// add adds the span between two readings.
func (s *cpuSpan) add(from, to cpuTimes) {
	if !from.ok || !to.ok {
		s.bad = true
		return
	}
	s.total += to.total - from.total
	s.idle += to.idle - from.idle
	s.self += to.self - from.self
	s.redis += to.redis - from.redis
}

// cpuShare is how time was spent, as fractions of the machine.
type cpuShare struct {
	ok                        bool
	self, redis, others, idle float64
}

func (s cpuSpan) share() cpuShare {
	if s.bad || s.total <= 0 {
		return cpuShare{}
	}
	total := float64(s.total)
	c := cpuShare{ok: true, self: float64(s.self) / total, redis: float64(s.redis) / total, idle: float64(s.idle) / total}
	c.others = max(0, 1-c.idle-c.self-c.redis)
	return c
}

// read returns the current times; ok is false where /proc is missing.
func (m cpuMeter) read() cpuTimes {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return cpuTimes{}
	}
	var t cpuTimes
	for i, s := range f[1:9] { // user nice system idle iowait irq softirq steal
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return cpuTimes{}
		}
		t.total += n
		if i == 3 || i == 4 {
			t.idle += n
		}
	}
	var ok bool
	if t.self, ok = processTicks(m.self); !ok {
		return cpuTimes{}
	}
	if m.redis != 0 {
		t.redis, _ = processTicks(m.redis)
	}
	t.ok = true
	return t
}

// processTicks returns the user and system clock ticks of process pid, all
// its threads included.
func processTicks(pid int) (int64, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// The fields after the command name, which may hold spaces, in
	// parentheses: state is the 3rd field of the line, utime the 14th.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, false
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	return utime + stime, err1 == nil && err2 == nil
}

// profileCall runs call once more at each concurrency, for the warm-up and
// the duration of a cell, and writes a CPU profile of the process (client
// and server) over those runs to o.cpuProfile.
func profileCall(ctx context.Context, call benchCall, o benchOptions, stderr io.Writer) error {
	f, err := os.Create(o.cpuProfile)
	if err != nil {
		return fmt.Errorf("--cpuprofile: %w", err)
	}
	defer f.Close()
	if err := pprof.StartCPUProfile(f); err != nil {
		return fmt.Errorf("--cpuprofile %s: %w", o.cpuProfile, err)
	}
	for _, conc := range o.concurrency {
		if err := newCell(call, conc, o.duration).run(ctx, o.warmup, o.duration); err != nil {
			pprof.StopCPUProfile()
			return fmt.Errorf("bench: profile %s at concurrency %d: %w", call.name, conc, err)
		}
	}
	pprof.StopCPUProfile()
	if err := f.Close(); err != nil {
		return fmt.Errorf("--cpuprofile: %w", err)
	}
	fmt.Fprintf(stderr, "CPU profile of %s at concurrency %v: %s\n", call.name, o.concurrency, o.cpuProfile)
	return nil
}

// benchWorld is what the cells run against: the server of the synthetic
// project, client connections to it, and a raw Redis client for the floors.
type benchWorld struct {
	project *larder.Project
	dir     string
	backend *backend
	srv     *running
	stop    context.CancelFunc
	served  chan error

	conns []*grpc.ClientConn
	raw   redis.UniversalClient
	// userRows and itemRows are the live generations' bucket hash names.
	userRows, itemRows bucketKeys
	users, items       int
}

// newBenchWorld writes the synthetic project into Redis at addr and starts
// its server. On error it returns the part built so far, for close.
func (a *app) newBenchWorld(ctx context.Context, addr string, o benchOptions) (*benchWorld, error) {
	dir, err := os.MkdirTemp("", "larder-bench-")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	w := &benchWorld{dir: dir, users: o.users, items: o.items}
	if w.project, err = benchProjectDef(dir, addr, o); err != nil {
		return w, err
	}
	mlp, err := models.NewRandomMLP(2*benchRankInputs, o.hidden(), 1)
	if err != nil {
		return w, err
	}
	if err := writeModel(mlp, filepath.Join(dir, w.project.Rankers[0].Model)); err != nil {
		return w, err
	}

	client, err := store.Connect(w.project.Redis)
	if err != nil {
		return w, err
	}
	w.backend = &backend{client: client, store: store.New(client, benchProject, store.Options{Logger: a.logger, Now: a.now})}
	pingCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := client.Ping(pingCtx).Err(); err != nil {
		return w, fmt.Errorf("bench: redis %s: %w (is it running?)", addr, err)
	}
	if w.raw, err = store.Connect(w.project.Redis); err != nil {
		return w, err
	}

	start := time.Now()
	for _, v := range []struct {
		name string
		n    int
		seed uint64
	}{{benchUserView, o.users, 1}, {benchItemView, o.items, 2}} {
		if err := w.publish(ctx, w.project.View(v.name), v.n, v.seed, a.now()); err != nil {
			return w, err
		}
	}
	fmt.Fprintf(a.stderr, "wrote %d users and %d items in %s\n", o.users, o.items, time.Since(start).Round(time.Millisecond))
	if w.userRows, err = w.liveBuckets(ctx, benchUserView, o.users); err != nil {
		return w, err
	}
	if w.itemRows, err = w.liveBuckets(ctx, benchItemView, o.items); err != nil {
		return w, err
	}

	if w.srv, err = a.startServer(ctx, w.project, w.backend, "127.0.0.1:0"); err != nil {
		return w, err
	}
	w.srv.grpc.Server.RegisterService(w.floorMethods(), nil)
	var serveCtx context.Context
	serveCtx, w.stop = context.WithCancel(context.WithoutCancel(ctx))
	w.served = make(chan error, 1)
	go func() { w.served <- w.srv.wait(serveCtx, 5*time.Second) }()
	for range o.conns {
		conn, err := grpc.NewClient(w.srv.addr, grpc.WithTransportCredentials(insecure.NewCredentials()), server.CodecDialOption())
		if err != nil {
			return w, fmt.Errorf("bench: connect to %s: %w", w.srv.addr, err)
		}
		w.conns = append(w.conns, conn)
		// Each connection dials before the first cell, not during it.
		if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			return w, fmt.Errorf("bench: health check of the server at %s: %w", w.srv.addr, err)
		}
	}
	fmt.Fprintf(a.stderr, "serving on %s; measuring\n", w.srv.addr)
	return w, nil
}

// benchProjectDef returns the synthetic project, validated.
func benchProjectDef(dir, addr string, o benchOptions) (*larder.Project, error) {
	feats := func() []larder.Feature {
		fs := make([]larder.Feature, benchFeatures)
		for i := range fs {
			fs[i] = larder.Feature{Name: featureName(i), Type: larder.TypeFloat64}
		}
		return fs
	}
	var inputs []larder.RankerInput
	for _, view := range []string{benchUserView, benchItemView} {
		for i := range benchRankInputs {
			inputs = append(inputs, larder.RankerInput{Ref: view + ":" + featureName(i)})
		}
	}
	p := &larder.Project{
		Name:  benchProject,
		Dir:   dir,
		Redis: larder.Redis{Addrs: []string{addr}},
		Entities: []*larder.Entity{
			{Name: "user", Key: "user_id", KeyType: larder.TypeInt64},
			{Name: "item", Key: "item_id", KeyType: larder.TypeInt64},
		},
		// The rows are written straight into the store; the source is never read.
		Sources: []*larder.Source{{Name: "synthetic", Path: "synthetic.parquet", EventTime: "event_time"}},
		Views: []*larder.View{
			{Name: benchUserView, Kind: larder.KindLatest, Entity: "user", Source: "synthetic", MaxAge: 24 * time.Hour, Features: feats()},
			{Name: benchItemView, Kind: larder.KindLatest, Entity: "item", Source: "synthetic", MaxAge: 24 * time.Hour, Features: feats()},
		},
		Rankers: []*larder.Ranker{{Name: benchRanker, Model: "rerank.onnx", Context: "user", Candidate: "item", Inputs: inputs}},
	}
	if o.heavy {
		// Under load the heavy model runs past the default model timeout;
		// the bench measures the model, so only the call's own bound holds.
		p.Rankers[0].ModelTimeout = callTimeout
	}
	if o.batching {
		batch := o.batch
		p.Rankers = append(p.Rankers, &larder.Ranker{Name: benchBatched, Model: "rerank.onnx", Context: "user", Candidate: "item",
			Inputs: inputs, ModelTimeout: p.Rankers[0].ModelTimeout, Batching: &batch})
	}
	p.SetDefaults()
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("bench: the synthetic project: %w", err)
	}
	return p, nil
}

func featureName(i int) string { return "f" + strconv.Itoa(i/10) + strconv.Itoa(i%10) }

// writeModel writes mlp as an ONNX file at path.
func writeModel(mlp *models.Net, path string) error {
	var buf bytes.Buffer
	if err := mlp.WriteONNX(&buf, larder.DefaultModelInput, larder.DefaultModelOutput); err != nil {
		return err
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("bench: write the model: %w", err)
	}
	return nil
}

// publish writes n entities, keyed 1..n, with random values as a new
// generation of v, and publishes it.
func (w *benchWorld) publish(ctx context.Context, v *larder.View, n int, seed uint64, now time.Time) error {
	gw, err := w.backend.store.BeginSized(ctx, v, int64(n))
	if err != nil {
		return fmt.Errorf("bench: write %s: %w", v.Name, err)
	}
	rng := rand.New(rand.NewPCG(seed, 0x62656e6368)) // "bench"
	row := larder.Row{EventTime: now, Values: make([]larder.Value, len(v.Features))}
	for id := 1; id <= n; id++ {
		for i := range row.Values {
			row.Values[i] = larder.Float64Value(rng.NormFloat64())
		}
		if err := gw.Put(ctx, larder.Int64Key(int64(id)), row); err != nil {
			_ = gw.Abort(context.WithoutCancel(ctx))
			return fmt.Errorf("bench: write %s: %w", v.Name, err)
		}
	}
	if _, err := gw.Publish(ctx); err != nil {
		_ = gw.Abort(context.WithoutCancel(ctx))
		return fmt.Errorf("bench: publish %s: %w", v.Name, err)
	}
	return nil
}

// bucketKeys are the names of a generation's bucket hashes, by bucket.
type bucketKeys []string

// of returns the bucket hash holding the row of the entity whose canonical
// key is field: the store's layout, 32-bit FNV-1a of the field modulo the
// bucket count (see the store package doc).
func (b bucketKeys) of(field []byte) string {
	h := uint32(2166136261)
	for _, c := range field {
		h ^= uint32(c)
		h *= 16777619
	}
	return b[h%uint32(len(b))]
}

// liveBuckets returns the bucket hash names of view's live generation, and
// checks them by reading the first rows raw: the floor must read what the
// store reads.
func (w *benchWorld) liveBuckets(ctx context.Context, view string, n int) (bucketKeys, error) {
	gens, err := w.backend.store.Generations(ctx, view)
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(gens, func(g store.GenerationInfo) bool { return g.Live })
	if i < 0 {
		return nil, fmt.Errorf("bench: view %s has no live generation after publishing", view)
	}
	g := gens[i]
	keys := make(bucketKeys, g.Buckets)
	for b := range keys {
		keys[b] = "larder:" + benchProject + ":" + view + ":" + strconv.FormatInt(g.ID, 10) + ":" + strconv.Itoa(b)
	}
	pipe := w.raw.Pipeline()
	for id := 1; id <= min(n, 100); id++ {
		field := strconv.Itoa(id)
		pipe.HGet(ctx, keys.of([]byte(field)), field)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("bench: the raw Redis floor does not find the rows of %s where the store keeps them (%w): the store's key layout changed; update bucketKeys in cmd/larder/bench.go", view, err)
	}
	return keys, nil
}

// redisVersion returns the server's redis_version, or "?".
func (w *benchWorld) redisVersion(ctx context.Context) string {
	info, err := w.raw.Info(ctx, "server").Result()
	if err != nil {
		return "?"
	}
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
			return v
		}
	}
	return "?"
}

// close stops the server and closes the clients; with deleteKeys (a Redis
// server the bench does not own) it also deletes the bench's keys.
func (w *benchWorld) close(ctx context.Context, stderr io.Writer, deleteKeys bool) {
	for _, c := range w.conns {
		_ = c.Close()
	}
	if w.stop != nil {
		w.stop()
		<-w.served
	}
	if w.srv != nil {
		w.srv.close()
	}
	if deleteKeys && w.raw != nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		if err := deleteProjectKeys(cctx, w.raw); err != nil {
			fmt.Fprintf(stderr, "larder bench: delete the keys larder:%s:*: %v\n", benchProject, err)
		}
		cancel()
	}
	if w.raw != nil {
		_ = w.raw.Close()
	}
	if w.backend != nil {
		w.backend.Close()
	}
	_ = os.RemoveAll(w.dir)
}

// deleteProjectKeys deletes every key of the bench project, with SCAN.
func deleteProjectKeys(ctx context.Context, c redis.UniversalClient) error {
	iter := c.Scan(ctx, 0, "larder:"+benchProject+":*", 1000).Iterator()
	batch := make([]string, 0, 1000)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := c.Unlink(ctx, batch...).Err()
		batch = batch[:0]
		return err
	}
	for iter.Next(ctx) {
		if batch = append(batch, iter.Val()); len(batch) == cap(batch) {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := iter.Err(); err != nil {
		return err
	}
	return flush()
}

// benchCall is one kind of call. newCaller returns the function caller i
// calls in a loop, with its own random keys and buffers.
type benchCall struct {
	name      string
	newCaller func(i int) func(context.Context) error
}

// calls returns every call, in the order of benchLegend.
func (w *benchWorld) calls() []benchCall {
	calls := []benchCall{
		{callEmpty, w.emptyCaller},
		{callRedis1, func(i int) func(context.Context) error { return w.redisCaller(i, false) }},
		{callRedis101, func(i int) func(context.Context) error { return w.redisCaller(i, true) }},
		{callModel, w.modelCaller},
		{callServed1, w.floorCaller("Read")},
		{callServedRank, w.floorCaller("Rank")},
		{callGet1, func(i int) func(context.Context) error { return w.getCaller(i, 1) }},
		{callGet100, func(i int) func(context.Context) error { return w.getCaller(i, benchCandidates) }},
		{callRank, func(i int) func(context.Context) error { return w.rankCaller(i, benchRanker) }},
	}
	if w.project.Ranker(benchBatched) != nil {
		calls = append(calls, benchCall{callRankBatched, func(i int) func(context.Context) error { return w.rankCaller(i, benchBatched) }})
	}
	return calls
}

// callerRand returns caller i's random source: callers draw different keys.
func callerRand(i int, call string) *rand.Rand {
	var h uint64
	for _, c := range []byte(call) {
		h = h*31 + uint64(c)
	}
	return rand.New(rand.NewPCG(uint64(i), h))
}

func (w *benchWorld) conn(i int) *grpc.ClientConn { return w.conns[i%len(w.conns)] }

func (w *benchWorld) emptyCaller(i int) func(context.Context) error {
	client := healthpb.NewHealthClient(w.conn(i))
	req := &healthpb.HealthCheckRequest{}
	return func(ctx context.Context) error {
		_, err := client.Check(ctx, req)
		return err
	}
}

// redisCaller reads one random user's row, or with rank a random user's and
// 100 random items' rows, in one pipeline, as the store does.
func (w *benchWorld) redisCaller(i int, rank bool) func(context.Context) error {
	rng := callerRand(i, "redis")
	var field []byte
	return func(ctx context.Context) error {
		pipe := w.raw.Pipeline()
		_, field = w.queueReads(ctx, pipe, rng.Int64N, rank, field)
		_, err := pipe.Exec(ctx) // redis.Nil, a missing row, is an error here
		return err
	}
}

// queueReads queues on pipe the HGET of a random user's row and, with rank,
// those of 100 random items' rows, drawn with intN, as the store reads
// them. It returns the user's command, and field (a buffer for the hash
// fields) grown.
func (w *benchWorld) queueReads(ctx context.Context, pipe redis.Pipeliner, intN func(int64) int64, rank bool, field []byte) (*redis.StringCmd, []byte) {
	field = strconv.AppendInt(field[:0], 1+intN(int64(w.users)), 10)
	user := pipe.HGet(ctx, w.userRows.of(field), string(field))
	if rank {
		for range benchCandidates {
			field = strconv.AppendInt(field[:0], 1+intN(int64(w.items)), 10)
			pipe.HGet(ctx, w.itemRows.of(field), string(field))
		}
	}
	return user, field
}

// modelCaller scores a prepared batch of 100 rows with the model the server
// loaded, through the same shared session.
func (w *benchWorld) modelCaller(i int) func(context.Context) error {
	rng := callerRand(i, "model")
	m := w.srv.svc.Models()[benchRanker]
	f := 2 * benchRankInputs
	x := make([]float32, benchCandidates*f)
	for j := range x {
		x[j] = float32(rng.NormFloat64())
	}
	out := make([]float32, benchCandidates)
	return func(ctx context.Context) error {
		return m.Score(ctx, x, benchCandidates, out)
	}
}

// getCaller asks for every feature of n random users. The request and its
// keys are reused: the client has encoded them when the call returns.
func (w *benchWorld) getCaller(i, n int) func(context.Context) error {
	rng := callerRand(i, "get")
	fs := larderv1.NewFeatureServiceClient(w.conn(i))
	ids := make([]larderv1.EntityKey_Int64Value, n)
	req := &larderv1.GetFeaturesRequest{Keys: make([]*larderv1.EntityKey, n), Features: []string{benchUserView + ":*"}}
	for j := range req.Keys {
		req.Keys[j] = &larderv1.EntityKey{Key: &ids[j]}
	}
	return func(ctx context.Context) error {
		for j := range ids {
			ids[j].Int64Value = 1 + rng.Int64N(int64(w.users))
		}
		resp, err := fs.GetFeatures(ctx, req)
		if err != nil {
			return err
		}
		f, err := client.NewFeatures(resp)
		if err != nil {
			return err
		}
		if f.Rows() != n {
			return fmt.Errorf("got %d rows, want %d", f.Rows(), n)
		}
		if f.Columns() != benchFeatures {
			return fmt.Errorf("got %d columns, want %d", f.Columns(), benchFeatures)
		}
		if s := f.Status(0, 0); s != larderv1.FeatureStatus_FEATURE_STATUS_PRESENT {
			return fmt.Errorf("user %d: status %s, want present", ids[0].Int64Value, s)
		}
		return nil
	}
}

// rankCaller ranks 100 random items for a random user with ranker.
func (w *benchWorld) rankCaller(i int, ranker string) func(context.Context) error {
	rng := callerRand(i, "rank")
	client := larderv1.NewFeatureServiceClient(w.conn(i))
	user := &larderv1.EntityKey_Int64Value{}
	items := make([]larderv1.EntityKey_Int64Value, benchCandidates)
	req := &larderv1.RankRequest{Ranker: ranker, ContextKey: &larderv1.EntityKey{Key: user}, CandidateKeys: make([]*larderv1.EntityKey, benchCandidates)}
	for j := range req.CandidateKeys {
		req.CandidateKeys[j] = &larderv1.EntityKey{Key: &items[j]}
	}
	return func(ctx context.Context) error {
		user.Int64Value = 1 + rng.Int64N(int64(w.users))
		for j := range items {
			items[j].Int64Value = 1 + rng.Int64N(int64(w.items))
		}
		resp, err := client.Rank(ctx, req)
		if err != nil {
			return err
		}
		if n := len(resp.GetCandidates()); n != larder.DefaultTopK {
			return fmt.Errorf("got %d candidates, want %d", n, larder.DefaultTopK)
		}
		if resp.GetDegraded() {
			return fmt.Errorf("degraded answer: %s", resp.GetDegradedReason())
		}
		return nil
	}
}

// cellResult is one call measured at one concurrency.
type cellResult struct {
	call    string
	conc    int
	n       int
	elapsed time.Duration
	rps     float64
	p50     time.Duration
	p95     time.Duration
	p99     time.Duration
	p999    time.Duration
	cpu     cpuShare
}

// callTimeout bounds a call that is still running when its round ends.
const callTimeout = 10 * time.Second

// cell measures one call at one concurrency, over one or more rounds.
type cell struct {
	call    benchCall
	conc    int
	callers []func(context.Context) error
	// lats holds each caller's latencies, over every round.
	lats    [][]time.Duration
	elapsed time.Duration
	cpu     cpuSpan
}

// newCell makes the callers of call, with room for the latencies of
// duration: one call per 20µs, shared by the callers (a faster caller's
// slice grows).
func newCell(call benchCall, conc int, duration time.Duration) *cell {
	c := &cell{call: call, conc: conc, callers: make([]func(context.Context) error, conc), lats: make([][]time.Duration, conc)}
	room := min(int(duration/(20*time.Microsecond))/conc+64, 1<<20)
	for i := range c.callers {
		c.callers[i] = call.newCaller(i)
		c.lats[i] = make([]time.Duration, 0, room)
	}
	return c
}

// run runs one round: every caller calls in a loop for warmup, then for
// duration, and the latency of every call that starts after the warm-up
// is recorded. A caller that has recorded no call of the round by its end
// makes one more call, so that a busy machine gives slower figures rather
// than none. Every goroutine stops by itself at the end of the round, or
// after that last call. It returns the first error of a call, or ctx.Err().
func (c *cell) run(ctx context.Context, warmup, duration time.Duration) error {
	start := time.Now()
	from, end := start.Add(warmup), start.Add(warmup+duration)
	roundCtx, cancel := context.WithDeadline(ctx, end.Add(callTimeout))
	defer cancel()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		lastEnd  = make([]time.Time, len(c.callers))
	)
	for i, fn := range c.callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := c.lats[i]
			before := len(lat) // the calls of earlier rounds
			for roundCtx.Err() == nil {
				t0 := time.Now()
				if !t0.Before(end) && len(lat) > before {
					break
				}
				err := fn(roundCtx)
				t1 := time.Now()
				if err != nil {
					mu.Lock()
					if firstErr == nil || errors.Is(firstErr, context.Canceled) {
						firstErr = err
					}
					mu.Unlock()
					cancel()
					break
				}
				if !t0.Before(from) {
					lat = append(lat, t1.Sub(t0))
					lastEnd[i] = t1
				}
			}
			c.lats[i] = lat
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	if firstErr != nil {
		return firstErr
	}
	last := from
	for _, t := range lastEnd {
		if t.After(last) {
			last = t
		}
	}
	c.elapsed += last.Sub(from)
	return nil
}

// result sorts the recorded latencies and returns the cell's figures. It
// returns an error when no call completed.
func (c *cell) result() (cellResult, error) {
	n := 0
	for _, l := range c.lats {
		n += len(l)
	}
	if n == 0 || c.elapsed <= 0 {
		return cellResult{}, errors.New("no call completed")
	}
	all := make([]time.Duration, 0, n)
	for _, l := range c.lats {
		all = append(all, l...)
	}
	slices.Sort(all)
	return cellResult{
		call: c.call.name, conc: c.conc, n: n, elapsed: c.elapsed,
		rps: float64(n) / c.elapsed.Seconds(),
		p50: percentile(all, 0.50), p95: percentile(all, 0.95), p99: percentile(all, 0.99), p999: percentile(all, 0.999),
		cpu: c.cpu.share(),
	}, nil
}

// percentile returns the q-quantile of sorted by the nearest-rank method: the
// smallest value with at least q of the values at or below it. sorted must
// not be empty.
func percentile(sorted []time.Duration, q float64) time.Duration {
	rank := int(q*float64(len(sorted)) + 0.9999999)
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// textTable is a header and rows of cells. A column is aligned right
// (numbers) unless left says otherwise (names).
type textTable struct {
	header []string
	left   []bool
	rows   [][]string
}

func resultTable(results []cellResult) textTable {
	t := textTable{
		header: []string{"call", "concurrency", "requests", "RPS", "p50", "p95", "p99", "p999", "others"},
		left:   []bool{true},
	}
	for _, r := range results {
		t.rows = append(t.rows, []string{
			r.call, strconv.Itoa(r.conc), strconv.Itoa(r.n), strconv.FormatFloat(r.rps, 'f', 0, 64),
			formatLatency(r.p50), formatLatency(r.p95), formatLatency(r.p99), formatLatency(r.p999),
			orDash(percent(r.cpu.others), r.cpu.ok),
		})
	}
	return t
}

// cellIndex finds a measured cell by its call and concurrency.
type cellIndex map[string]cellResult

func indexCells(results []cellResult) cellIndex {
	ix := make(cellIndex, len(results))
	for _, r := range results {
		ix[r.call+"@"+strconv.Itoa(r.conc)] = r
	}
	return ix
}

func (ix cellIndex) get(call string, conc int) cellResult { return ix[call+"@"+strconv.Itoa(conc)] }

// ratioTable compares, at each concurrency, larder's figures with the sum of
// their floors, against the goals they are held to, and with the composed
// floors.
func ratioTable(results []cellResult, concurrency []int) textTable {
	cells := indexCells(results)
	t := textTable{
		header: []string{"concurrency", "figure", "larder", "floor", "ratio", "goal"},
		left:   []bool{true, true, false, false, false, true},
	}
	for _, c := range concurrency {
		get := func(call string) cellResult { return cells.get(call, c) }
		latency := func(call string, goal bool, floors ...string) {
			var sum time.Duration
			for _, f := range floors {
				sum += get(f).p50
			}
			label := call + " p50 / " + strings.Join(floors, " + ")
			if len(floors) > 1 {
				label = call + " p50 / (" + strings.Join(floors, " + ") + ")"
			}
			ratio := float64(get(call).p50) / float64(sum)
			verdict := "-"
			if goal {
				verdict = goalVerdict(fmt.Sprintf("≤ %.1f×", goalLatencyRatio), ratio <= goalLatencyRatio)
			}
			t.rows = append(t.rows, []string{strconv.Itoa(c), label, formatLatency(get(call).p50), formatLatency(sum), fmt.Sprintf("%.2f×", ratio), verdict})
		}
		throughput := func(call, floor string, goal bool) {
			rps, floorRPS := get(call).rps, get(floor).rps
			ratio := rps / floorRPS
			verdict := "-"
			if goal {
				verdict = goalVerdict(fmt.Sprintf("≥ %.0f%%", 100*goalThroughputRatio), ratio >= goalThroughputRatio)
			}
			t.rows = append(t.rows, []string{strconv.Itoa(c), call + " RPS / " + floor + " RPS",
				strconv.FormatFloat(rps, 'f', 0, 64), strconv.FormatFloat(floorRPS, 'f', 0, 64),
				fmt.Sprintf("%.0f%%", 100*ratio), verdict})
		}
		latency(callGet1, true, callEmpty, callRedis1)
		latency(callGet100, false, callEmpty, callRedis101)
		latency(callRank, true, callEmpty, callRedis101, callModel)
		throughput(callGet1, callEmpty, true)
		// Against the composed floors: larder's own cost.
		latency(callGet1, false, callServed1)
		latency(callRank, false, callServedRank)
		throughput(callGet1, callServed1, false)
	}
	return t
}

// batchingTable compares, at each concurrency, Rank through the batching
// ranker with Rank through the plain one.
func batchingTable(results []cellResult, concurrency []int) textTable {
	cells := indexCells(results)
	t := textTable{
		header: []string{"concurrency", "Rank RPS", "Rank-batched RPS", "RPS ratio", "Rank p50", "batched p50", "Rank p99", "batched p99"},
	}
	for _, c := range concurrency {
		plain, batched := cells.get(callRank, c), cells.get(callRankBatched, c)
		t.rows = append(t.rows, []string{strconv.Itoa(c),
			strconv.FormatFloat(plain.rps, 'f', 0, 64), strconv.FormatFloat(batched.rps, 'f', 0, 64),
			fmt.Sprintf("%.2f×", batched.rps/plain.rps),
			formatLatency(plain.p50), formatLatency(batched.p50), formatLatency(plain.p99), formatLatency(batched.p99)})
	}
	return t
}

func goalVerdict(goal string, met bool) string {
	if met {
		return goal + " met"
	}
	return goal + " NOT met"
}

// printTable writes t aligned for a terminal, or as a Markdown table.
func printTable(w io.Writer, markdown bool, t textTable) {
	bw := bufio.NewWriter(w)
	defer bw.Flush()
	if markdown {
		line := func(cells []string) { fmt.Fprintf(bw, "| %s |\n", strings.Join(cells, " | ")) }
		line(t.header)
		sep := make([]string, len(t.header))
		for i := range sep {
			sep[i] = "---:"
			if t.leftAligned(i) {
				sep[i] = "---"
			}
		}
		line(sep)
		for _, r := range t.rows {
			line(r)
		}
		return
	}
	width := make([]int, len(t.header))
	for _, r := range append([][]string{t.header}, t.rows...) {
		for i, c := range r {
			width[i] = max(width[i], utf8.RuneCountInString(c))
		}
	}
	var line strings.Builder
	for _, r := range append([][]string{t.header}, t.rows...) {
		line.Reset()
		for i, c := range r {
			if i > 0 {
				line.WriteString("  ")
			}
			pad := strings.Repeat(" ", width[i]-utf8.RuneCountInString(c))
			if t.leftAligned(i) {
				line.WriteString(c + pad)
			} else {
				line.WriteString(pad + c)
			}
		}
		bw.WriteString(strings.TrimRight(line.String(), " ") + "\n")
	}
}

func (t textTable) leftAligned(col int) bool { return col < len(t.left) && t.left[col] }

// formatLatency prints d with three significant digits or so.
func formatLatency(d time.Duration) string {
	us := float64(d) / float64(time.Microsecond)
	switch {
	case us < 10:
		return fmt.Sprintf("%.2fµs", us)
	case us < 1000:
		return fmt.Sprintf("%.1fµs", us)
	case us < 1e6:
		return fmt.Sprintf("%.2fms", us/1e3)
	}
	return fmt.Sprintf("%.2fs", us/1e6)
}

// machineLine describes the machine for the table's heading.
func machineLine() string {
	s := fmt.Sprintf("%s/%s, %d CPUs (GOMAXPROCS %d)", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.GOMAXPROCS(0))
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if name, ok := strings.CutPrefix(line, "model name"); ok {
				s += ", " + strings.TrimSpace(strings.TrimLeft(name, " \t:"))
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if kb, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				if n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(kb), " kB"), 10, 64); err == nil {
					s += fmt.Sprintf(", %.0f GiB", float64(n)/(1<<20))
				}
				break
			}
		}
	}
	return s + ", " + runtime.Version()
}

// redisChild is a redis-server process the bench started and stops.
type redisChild struct {
	addr   string
	dir    string
	cmd    *exec.Cmd
	exited chan struct{}
	output bytes.Buffer // read only after exited is closed
}

// errRedisMissing says how to get redis-server.
var errRedisMissing = errors.New("bench: redis-server is not installed (not on PATH): run make setup or apt-get install redis-server, or pass --redis ADDR of a Redis server the bench may write to")

// startRedisChild starts redis-server with persistence off on a free
// loopback port and returns once it answers PING. It returns errRedisMissing
// when redis-server is not on PATH.
func startRedisChild(ctx context.Context) (*redisChild, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, errRedisMissing
	}
	dir, err := os.MkdirTemp("", "larder-bench-redis-")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	var last error
	for range 5 { // another process may take the port between choosing and binding it
		port, err := freeLoopbackPort()
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		c, err := runRedisChild(ctx, bin, dir, port)
		if err == nil {
			return c, nil
		}
		last = err
		if !strings.Contains(err.Error(), "Address already in use") {
			break
		}
	}
	os.RemoveAll(dir)
	return nil, last
}

func freeLoopbackPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("bench: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func runRedisChild(ctx context.Context, bin, dir string, port int) (*redisChild, error) {
	c := &redisChild{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dir: dir, exited: make(chan struct{})}
	c.cmd = exec.Command(bin,
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no",
		"--dir", dir, "--daemonize", "no", "--loglevel", "warning")
	c.cmd.Dir = dir
	c.cmd.Stdout = &c.output
	c.cmd.Stderr = &c.output
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start %s: %w", bin, err)
	}
	go func() {
		_ = c.cmd.Wait()
		close(c.exited)
	}()

	client := redis.NewClient(&redis.Options{Addr: c.addr, DialTimeout: 200 * time.Millisecond, MaxRetries: -1})
	defer client.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		err := client.Ping(pctx).Err()
		cancel()
		if err == nil {
			return c, nil
		}
		select {
		case <-c.exited:
			return nil, fmt.Errorf("bench: redis-server on %s exited: %s", c.addr, strings.TrimSpace(c.output.String()))
		case <-ctx.Done():
			c.kill()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			c.kill()
			return nil, fmt.Errorf("bench: redis-server on %s did not answer PING within 10s: %w; its output: %s", c.addr, err, strings.TrimSpace(c.output.String()))
		}
	}
}

func (c *redisChild) kill() {
	_ = c.cmd.Process.Kill()
	<-c.exited
}

// stop asks the server to exit, kills it after 5 seconds, and removes its
// folder.
func (c *redisChild) stop() {
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		_ = c.cmd.Process.Kill()
	}
	select {
	case <-c.exited:
	case <-time.After(5 * time.Second):
		c.kill()
	}
	_ = os.RemoveAll(c.dir)
}
