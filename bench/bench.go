package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
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
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

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
	CallEmpty      = "empty-call"
	CallRedis1     = "redis-1"
	CallRedis101   = "redis-101"
	CallModel      = "model-100"
	CallServed1    = "grpc+redis-1"
	CallServedRank = "grpc+redis-101+model-100"
	CallGet1       = "GetFeatures-1x20"
	CallGet100     = "GetFeatures-100x20"
	CallGetGeneric = "GetFeatures-100x20-generic"
	CallRank       = "Rank-1+100"
	CallCount      = 10
	// CallRankBatched is measured with --batching only.
	CallRankBatched = "Rank-batched"
)

// Legend says what each call is, below the table.
var Legend = [CallCount][2]string{
	{CallEmpty, "floor: gRPC health Check through the same server, interceptors and connections"},
	{CallRedis1, "floor: go-redis pipeline of 1 HGET (the bucket hash and field the store reads for a random user)"},
	{CallRedis101, "floor: go-redis pipeline of 101 HGETs (1 random user + 100 random items, as Rank reads)"},
	{CallModel, "floor: Model.Score of a prepared 100×20 float32 batch on a session of the server's model, in the bench process"},
	{CallServed1, "composed floor: a gRPC call through the same server whose handler runs redis-1's pipeline and answers with the row's bytes"},
	{CallServedRank, "composed floor: a gRPC call through the same server whose handler runs redis-101's pipeline, then model-100's batch"},
	{CallGet1, "GetFeatures of 1 random user × user_features:* (20 float64)"},
	{CallGet100, "GetFeatures of 100 random users × user_features:* (20 float64)"},
	{CallGetGeneric, "the same GetFeatures, through a generic, reflection-based protobuf client (dynamicpb and gRPC's default codec, on connections of its own), as ghz and most clients in other languages decode"},
	{CallRank, "Rank of 100 random items for 1 random user: 101 reads, a 100×20 model input, the ranker's MLP, top 10"},
}

// benchHeavyHidden are the hidden layers of the --heavy ranker's MLP.
var benchHeavyHidden = []int{256, 256}

// The goals the serving path is held to, each a ratio measured in one run.
const (
	goalLatencyRatio    = 1.5 // larder p50 at most 1.5× the sum of its floors' p50
	goalThroughputRatio = 0.6 // GetFeatures RPS at least 60% of the empty call's
)

// Options are the settings of a bench run, the flags of larder bench.
type Options struct {
	// Duration is how long each call is measured at each concurrency,
	// after Warmup, in Rounds slices taken in turn with the other calls.
	Duration, Warmup time.Duration
	Rounds           int
	// Concurrency lists the numbers of concurrent callers; Conns is the
	// number of gRPC connections they share.
	Concurrency []int
	Conns       int
	// Users and Items are the entities of the synthetic project.
	Users, Items int
	// Markdown prints the tables as Markdown.
	Markdown bool
	// CPUProfile, when set, is where the server process's CPU profile of
	// one more run of ProfileCall at each concurrency goes (the callers'
	// goes beside it, with .callers added).
	CPUProfile, ProfileCall string
	// Calls, when not empty, names the calls to measure (see CallNames);
	// the others are left out, and so are the ratios that need them.
	Calls []string
	// Batching adds the Rank-batched call: Rank of a second ranker, the
	// same model with Batch's settings.
	Batching bool
	Batch    larder.Batching
	// Heavy scores with an MLP of two 256-wide hidden layers.
	Heavy bool

	// Redis is the address of a Redis server to write the synthetic
	// project into, under larder:larderbench: (deleted at the end); ""
	// starts a redis-server child process on a free loopback port.
	Redis string
	// Binary and Env start the server process: Binary (the larder binary)
	// is run with ServerArgs's arguments and Env added to the environment.
	Binary string
	Env    []string

	Stdout, Stderr io.Writer
	Logger         *slog.Logger
	Now            func() time.Time
}

// Defaults returns the options of a default run: about three minutes.
func Defaults() Options {
	return Options{Duration: 5 * time.Second, Warmup: time.Second, Rounds: 5, Concurrency: []int{1, 16, 64},
		Conns: 8, Users: 100_000, Items: 10_000, ProfileCall: CallRank}
}

// setDefaults fills in the writers and the clock left unset.
func (o *Options) setDefaults() {
	if o.Stdout == nil {
		o.Stdout = io.Discard
	}
	if o.Stderr == nil {
		o.Stderr = io.Discard
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.ProfileCall == "" {
		o.ProfileCall = CallRank
	}
}

// hidden returns the hidden layers of the bench ranker's MLP.
func (o Options) hidden() []int {
	if o.Heavy {
		return benchHeavyHidden
	}
	return []int{benchHidden}
}

// mlpName names the bench ranker's MLP, such as 20→64→1.
func (o Options) mlpName() string {
	parts := []string{strconv.Itoa(2 * benchRankInputs)}
	for _, h := range o.hidden() {
		parts = append(parts, strconv.Itoa(h))
	}
	return strings.Join(append(parts, "1"), "→")
}

// CallNames returns the names of the calls bench measures with o, in the
// order of its tables.
func (o Options) CallNames() []string {
	names := make([]string, 0, len(Legend)+1)
	for _, l := range Legend {
		names = append(names, l[0])
	}
	if o.Batching {
		names = append(names, CallRankBatched)
	}
	return names
}

// Check returns an error naming the first flag with a value bench cannot
// use.
func (o Options) Check() error {
	switch {
	case o.Duration <= 0:
		return fmt.Errorf("--duration %s: must be positive", o.Duration)
	case o.Warmup < 0:
		return fmt.Errorf("--warmup %s: must not be negative", o.Warmup)
	case len(o.Concurrency) == 0:
		return errors.New("--concurrency: give at least one number of callers, such as 1,16,64")
	case o.Rounds < 1:
		return fmt.Errorf("--rounds %d: must be at least 1", o.Rounds)
	case o.Conns < 1:
		return fmt.Errorf("--conns %d: must be at least 1", o.Conns)
	case o.Users < 1 || o.Items < 1:
		return fmt.Errorf("--users %d, --items %d: each must be at least 1", o.Users, o.Items)
	case o.Batch.MaxDelay < 0 || o.Batch.MaxRows < 0 || o.Batch.MaxQueue < 0:
		return fmt.Errorf("--batch-max-delay %s, --batch-max-rows %d, --batch-max-queue %d: none may be negative", o.Batch.MaxDelay, o.Batch.MaxRows, o.Batch.MaxQueue)
	}
	names := o.CallNames()
	for _, c := range o.Calls {
		if !slices.Contains(names, c) {
			return fmt.Errorf("--calls %q: no such call; the calls are %s", c, strings.Join(names, ", "))
		}
	}
	if o.ProfileCall == "" {
		return nil
	}
	if !slices.Contains(names, o.ProfileCall) {
		return fmt.Errorf("--profile-call %q: no such call; the calls are %s", o.ProfileCall, strings.Join(names, ", "))
	}
	for _, c := range o.Concurrency {
		if c < 1 || c > 10_000 {
			return fmt.Errorf("--concurrency %d: each number of callers must be between 1 and 10000", c)
		}
	}
	return nil
}

// runBench builds the bench world, measures every cell and prints the tables.
// Run builds the bench world, measures every cell and prints the tables to
// o.Stdout, and its progress to o.Stderr.
func Run(ctx context.Context, o Options) error {
	if err := o.Check(); err != nil {
		return err
	}
	o.setDefaults()
	addr, where := o.Redis, "given by --redis"
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
	w, err := newWorld(ctx, addr, o)
	if w != nil {
		defer w.close(ctx, o.Stderr, o.Redis != "")
	}
	if err != nil {
		return err
	}
	meter.server = w.server.pid()

	all := w.calls()
	calls := all
	if len(o.Calls) > 0 {
		calls = slices.DeleteFunc(slices.Clone(all), func(c benchCall) bool { return !slices.Contains(o.Calls, c.name) })
	}
	var (
		results []cellResult
		run     cpuSpan
	)
	names := make([]string, len(calls))
	for i, c := range calls {
		names[i] = c.name
	}
	nameCol := nameWidth(names)
	first := meter.read()
	for _, conc := range o.Concurrency {
		cells := make([]*cell, len(calls))
		for i, call := range calls {
			cells[i] = newCell(call, conc, o.Duration)
			cells[i].redis = meter.redis != 0
		}
		for range o.Rounds {
			for _, c := range cells {
				before := meter.read()
				if err := c.run(ctx, o.Warmup/time.Duration(o.Rounds), o.Duration/time.Duration(o.Rounds)); err != nil {
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
			fmt.Fprintln(o.Stderr, progressLine(nameCol, r))
			results = append(results, r)
		}
	}
	run.add(first, meter.read())
	// The table lists each call at every concurrency.
	slices.SortStableFunc(results, func(x, y cellResult) int {
		return slices.IndexFunc(calls, func(c benchCall) bool { return c.name == x.call }) -
			slices.IndexFunc(calls, func(c benchCall) bool { return c.name == y.call })
	})

	if o.CPUProfile != "" {
		i := slices.IndexFunc(all, func(c benchCall) bool { return c.name == o.ProfileCall })
		if err := w.profileCall(ctx, all[i], o, o.Stderr); err != nil {
			return err
		}
	}
	share := run.share()

	out := o.Stdout
	fmt.Fprintf(out, "larder bench: %d users, %d items, %d float64 features per view; ranker %s: %d inputs (%d user + %d item), MLP %s in ONNX Runtime %s\n",
		o.Users, o.Items, benchFeatures, benchRanker, 2*benchRankInputs, benchRankInputs, benchRankInputs, o.mlpName(), w.runtime.ORTVersion())
	if o.Batching {
		b := w.project.Ranker(benchBatched).Batching
		fmt.Fprintf(out, "ranker %s: the same model, batching max_delay %s, max_rows %d, max_queue %d\n", benchBatched, b.MaxDelay, b.MaxRows, b.MaxQueue)
	}
	fmt.Fprintf(out, "machine: %s; redis-server %s at %s (%s)\n", machineLine(), w.redisVersion(ctx), addr, where)
	fmt.Fprintf(out, "each cell: %s warm-up, then %s measured, in %d rounds taken in turn with the other calls; %d gRPC connections; the callers (this process), the server (a process of its own, pid %d) and Redis share the machine's cores\n",
		o.Warmup, o.Duration, o.Rounds, o.Conns, w.server.pid())
	if share.ok {
		redis := "redis-server"
		if meter.redis == 0 {
			redis = "the Redis server (counted with other processes)"
		}
		fmt.Fprintf(out, "CPU over the cells: callers %s, server %s, %s %s, other processes %s, idle %s\n",
			percent(share.self), percent(share.server), redis, percent(share.redis), percent(share.others), percent(share.idle))
	}
	fmt.Fprintln(out)
	printTable(out, o.Markdown, resultTable(results))
	fmt.Fprintln(out)
	for _, t := range []textTable{ratioTable(results, o.Concurrency), batchingTable(results, o.Concurrency)} {
		if len(t.rows) > 0 {
			printTable(out, o.Markdown, t)
			fmt.Fprintln(out)
		}
	}
	var legend [][2]string
	for _, l := range Legend {
		if slices.ContainsFunc(calls, func(c benchCall) bool { return c.name == l[0] }) {
			legend = append(legend, l)
		}
	}
	if o.Batching && slices.ContainsFunc(calls, func(c benchCall) bool { return c.name == CallRankBatched }) {
		legend = append(legend, [2]string{CallRankBatched, "the same Rank through ranker " + benchBatched + ": the same model, with batching"})
	}
	legend = append(legend,
		[2]string{"server CPU", "the server process's CPU time (user and system, from its own accounting in /proc) per call, over the cell's warm-up and measured time; - for the floors that do not go through the server. /proc counts whole clock ticks of 10ms: 0 means that no tick was counted during the cell, and a figure from a tick or two (one tick over 2000 calls is 5.00µs) is that coarse"},
		[2]string{"callers CPU", "the same for the bench process, whose goroutines make the calls (and, for redis-1, redis-101 and model-100, do the work)"},
		[2]string{"redis CPU", "the same for the redis-server that bench started, whatever its work (its own timers included); - with --redis, whose server bench does not measure"},
		[2]string{"others", "the share of the machine's CPU that other processes used during the cell; more than a few percent disturbs its figures"})
	width := 0
	for _, l := range legend {
		width = max(width, len(l[0]))
	}
	for _, l := range legend {
		if o.Markdown {
			fmt.Fprintf(out, "- `%s`: %s\n", l[0], l[1])
		} else {
			fmt.Fprintf(out, "  %-*s %s\n", width, l[0], l[1])
		}
	}
	return nil
}

// orDash returns s, or "-" when there is no figure.
func orDash(s string, ok bool) string {
	if ok {
		return s
	}
	return "-"
}

// nameWidth returns the width of the longest of names, for a column of
// them.
func nameWidth(names []string) int {
	width := 0
	for _, n := range names {
		width = max(width, utf8.RuneCountInString(n))
	}
	return width
}

// progressLine is the line written to stderr when cell r is measured, its
// call's name in a column width wide.
func progressLine(width int, r cellResult) string {
	return fmt.Sprintf("  %-*s ×%-4d %8.0f RPS  p50 %s  server CPU/req %s  redis CPU/req %s", width, r.call, r.conc, r.rps, FormatLatency(r.p50),
		cpuText(r.serverCPU), cpuText(r.redisCPU))
}

// cpuText is a CPU time per call as bench prints it: - when the process
// was not measured (noCPU), 0 when /proc counted none of its clock ticks
// during the cell.
func cpuText(d time.Duration) string {
	switch {
	case d < 0:
		return "-"
	case d == 0:
		return "0"
	}
	return FormatLatency(d)
}

func percent(f float64) string { return strconv.FormatFloat(100*f, 'f', 0, 64) + "%" }

// cpuMeter reads from /proc the CPU time the machine, the bench process,
// the server process and the redis-server child (pid 0: none) have used, so
// that the tables can give the server's CPU time per call and say how much
// of the machine other processes took.
type cpuMeter struct{ self, server, redis int }

// clockTicks is the unit of the CPU times in /proc: USER_HZ, 100 a second
// on Linux.
const clockTicks = 100

// cpuTimes are cumulative clock ticks; ok is false when /proc could not be
// read.
type cpuTimes struct {
	ok                               bool
	total, idle, self, server, redis int64
}

// cpuSpan adds up the clock ticks of spans of time.
type cpuSpan struct {
	bad                              bool // a span could not be measured
	total, idle, self, server, redis int64
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
	s.server += to.server - from.server
	s.redis += to.redis - from.redis
}

// cpuShare is how time was spent, as fractions of the machine.
type cpuShare struct {
	ok                                bool
	self, server, redis, others, idle float64
}

func (s cpuSpan) share() cpuShare {
	if s.bad || s.total <= 0 {
		return cpuShare{}
	}
	total := float64(s.total)
	c := cpuShare{ok: true, self: float64(s.self) / total, server: float64(s.server) / total, redis: float64(s.redis) / total, idle: float64(s.idle) / total}
	c.others = max(0, 1-c.idle-c.self-c.server-c.redis)
	return c
}

// noCPU is the CPU time per call of a process that was not measured: the
// server for a call that does not go through it, a redis-server that bench
// did not start, or any process when /proc could not be read.
const noCPU time.Duration = -1

// perCall returns the CPU time of a process's ticks spread over calls, or
// noCPU when there is no figure.
func perCall(ticks, calls int64, bad bool) time.Duration {
	if bad || calls <= 0 || ticks < 0 {
		return noCPU
	}
	return time.Duration(float64(ticks) * float64(time.Second) / clockTicks / float64(calls))
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
	if m.server != 0 {
		if t.server, ok = processTicks(m.server); !ok {
			return cpuTimes{}
		}
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
// the duration of a cell, and writes a CPU profile of the server process
// over those runs to o.CPUProfile, and one of the bench process (the
// callers) to o.CPUProfile + ".callers".
func (w *benchWorld) profileCall(ctx context.Context, call benchCall, o Options, stderr io.Writer) error {
	path, err := filepath.Abs(o.CPUProfile)
	if err != nil {
		return fmt.Errorf("--cpuprofile: %w", err)
	}
	callers := path + ".callers"
	f, err := os.Create(callers)
	if err != nil {
		return fmt.Errorf("--cpuprofile: %w", err)
	}
	defer f.Close()
	conn := w.conn(0)
	if err := conn.Invoke(ctx, "/"+floorService+"/ProfileStart", wrapperspb.String(path), new(emptypb.Empty)); err != nil {
		return fmt.Errorf("--cpuprofile %s: the server process: %w", path, err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = conn.Invoke(ctx, "/"+floorService+"/ProfileStop", new(emptypb.Empty), new(emptypb.Empty))
		return fmt.Errorf("--cpuprofile %s: %w", callers, err)
	}
	var runErr error
	for _, conc := range o.Concurrency {
		if err := newCell(call, conc, o.Duration).run(ctx, o.Warmup, o.Duration); err != nil {
			runErr = fmt.Errorf("bench: profile %s at concurrency %d: %w", call.name, conc, err)
			break
		}
	}
	pprof.StopCPUProfile()
	stopErr := conn.Invoke(ctx, "/"+floorService+"/ProfileStop", new(emptypb.Empty), new(emptypb.Empty))
	if runErr != nil {
		return runErr
	}
	if stopErr != nil {
		return fmt.Errorf("--cpuprofile %s: the server process: %w", path, stopErr)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("--cpuprofile: %w", err)
	}
	fmt.Fprintf(stderr, "CPU profile of %s at concurrency %v: %s (server), %s (callers)\n", call.name, o.Concurrency, path, callers)
	return nil
}

// benchWorld is what the cells run against: the server process of the
// synthetic project, client connections to it, a raw Redis client and a
// session of the ranker's model for the floors. The server process builds
// one of its own from the same options (see runBenchServer), with the
// server in place of the connections.
type benchWorld struct {
	project *larder.Project
	dir     string
	client  redis.UniversalClient
	store   *store.Store
	server  *serverChild

	// runtime and model score the model floor in the bench process; in
	// the server process, model is the server's own.
	runtime *models.Runtime
	model   server.Model
	// profile is the server process's CPU profile, for --cpuprofile.
	profile *childProfile

	conns []*grpc.ClientConn
	// clients are the Go clients whose connections conns are.
	clients []*client.Client
	// genericConns are the generic client's, with gRPC's default codec.
	genericConns []*grpc.ClientConn
	raw          redis.UniversalClient
	// userRows and itemRows are the live generations' bucket hash names.
	userRows, itemRows bucketKeys
	users, items       int
}

// newBenchWorld writes the synthetic project into Redis at addr and starts
// its server. On error it returns the part built so far, for close.
func newWorld(ctx context.Context, addr string, o Options) (*benchWorld, error) {
	dir, err := os.MkdirTemp("", "larder-bench-")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	w := &benchWorld{dir: dir, users: o.Users, items: o.Items}
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

	rc, err := store.Connect(w.project.Redis)
	if err != nil {
		return w, err
	}
	w.client, w.store = rc, store.New(rc, benchProject, store.Options{Logger: o.Logger, Now: o.Now})
	pingCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := rc.Ping(pingCtx).Err(); err != nil {
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
	}{{benchUserView, o.Users, 1}, {benchItemView, o.Items, 2}} {
		if err := w.publish(ctx, w.project.View(v.name), v.n, v.seed, o.Now()); err != nil {
			return w, err
		}
	}
	fmt.Fprintf(o.Stderr, "wrote %d users and %d items in %s\n", o.Users, o.Items, time.Since(start).Round(time.Millisecond))
	if w.userRows, err = w.liveBuckets(ctx, benchUserView, o.Users); err != nil {
		return w, err
	}
	if w.itemRows, err = w.liveBuckets(ctx, benchItemView, o.Items); err != nil {
		return w, err
	}

	lib, err := models.LibraryPath()
	if err == nil {
		w.runtime, err = models.NewRuntime(lib)
	}
	if err != nil {
		return w, fmt.Errorf("bench: ONNX Runtime: %w", err)
	}
	rk := w.project.Ranker(benchRanker)
	m, err := w.runtime.Load(w.project.Path(rk.Model), models.Spec{Input: rk.ModelInput, Output: rk.ModelOutput, Features: len(rk.Inputs)})
	if err != nil {
		return w, fmt.Errorf("bench: load the model: %w", err)
	}
	w.model = m

	if w.server, err = startServerChild(ctx, dir, addr, o); err != nil {
		return w, err
	}
	for range o.Conns {
		// The Go client, as a product service dials it, without retries or
		// a deadline of its own; its connection serves the other calls.
		c, err := client.Dial(w.server.addr, client.WithAttempts(1), client.WithTimeout(0))
		if err != nil {
			return w, fmt.Errorf("bench: connect to %s: %w", w.server.addr, err)
		}
		conn := c.Conn()
		w.clients = append(w.clients, c)
		w.conns = append(w.conns, conn)
		// Each connection dials before the first cell, not during it.
		if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			return w, fmt.Errorf("bench: health check of the server at %s: %w", w.server.addr, err)
		}
	}
	for range o.Conns {
		conn, err := grpc.NewClient(w.server.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return w, fmt.Errorf("bench: connect to %s: %w", w.server.addr, err)
		}
		w.genericConns = append(w.genericConns, conn)
		if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			return w, fmt.Errorf("bench: health check of the server at %s: %w", w.server.addr, err)
		}
	}
	fmt.Fprintf(o.Stderr, "serving on %s (pid %d); measuring\n", w.server.addr, w.server.pid())
	return w, nil
}

// benchProjectDef returns the synthetic project, validated.
func benchProjectDef(dir, addr string, o Options) (*larder.Project, error) {
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
	if o.Heavy {
		// Under load the heavy model runs past the default model timeout;
		// the bench measures the model, so only the call's own bound holds.
		p.Rankers[0].ModelTimeout = callTimeout
	}
	if o.Batching {
		batch := o.Batch
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
	gw, err := w.store.BeginSized(ctx, v, int64(n))
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
	gens, err := w.store.Generations(ctx, view)
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
		return nil, fmt.Errorf("bench: the raw Redis floor does not find the rows of %s where the store keeps them (%w): the store's key layout changed; update bucketKeys in bench/bench.go", view, err)
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
	for _, c := range append(w.conns, w.genericConns...) {
		_ = c.Close()
	}
	if w.server != nil {
		w.server.stop()
	}
	if c, ok := w.model.(io.Closer); ok && w.runtime != nil {
		_ = c.Close()
	}
	if w.runtime != nil {
		_ = w.runtime.Close()
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
	if w.client != nil {
		_ = w.client.Close()
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
// calls in a loop, with its own random keys and buffers. served is set for
// the calls that go through the server process.
type benchCall struct {
	name      string
	newCaller func(i int) func(context.Context) error
	served    bool
}

// calls returns every call, in the order of Legend.
func (w *benchWorld) calls() []benchCall {
	calls := []benchCall{
		{CallEmpty, w.emptyCaller, true},
		{CallRedis1, func(i int) func(context.Context) error { return w.redisCaller(i, false) }, false},
		{CallRedis101, func(i int) func(context.Context) error { return w.redisCaller(i, true) }, false},
		{CallModel, w.modelCaller, false},
		{CallServed1, w.floorCaller("Read"), true},
		{CallServedRank, w.floorCaller("Rank"), true},
		{CallGet1, func(i int) func(context.Context) error { return w.getCaller(i, 1) }, true},
		{CallGet100, func(i int) func(context.Context) error { return w.getCaller(i, benchCandidates) }, true},
		{CallGetGeneric, func(i int) func(context.Context) error { return w.genericGetCaller(i, benchCandidates) }, true},
		{CallRank, func(i int) func(context.Context) error { return w.rankCaller(i, benchRanker) }, true},
	}
	if w.project.Ranker(benchBatched) != nil {
		calls = append(calls, benchCall{CallRankBatched, func(i int) func(context.Context) error { return w.rankCaller(i, benchBatched) }, true})
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

// modelCaller scores a prepared batch of 100 rows with a session of the
// server's model in the bench process, shared by the callers as the
// server's is.
func (w *benchWorld) modelCaller(i int) func(context.Context) error {
	rng := callerRand(i, "model")
	m := w.model
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

// getCaller asks for every feature of n random users through the Go
// client. The keys are reused: the client has encoded them when the call
// returns.
func (w *benchWorld) getCaller(i, n int) func(context.Context) error {
	rng := callerRand(i, "get")
	c := w.clients[i%len(w.clients)]
	ids := make([]larderv1.EntityKey_Int64Value, n)
	keys := make([]*larderv1.EntityKey, n)
	for j := range keys {
		keys[j] = &larderv1.EntityKey{Key: &ids[j]}
	}
	return func(ctx context.Context) error {
		for j := range ids {
			ids[j].Int64Value = 1 + rng.Int64N(int64(w.users))
		}
		f, err := c.GetFeatures(ctx, keys, benchUserView+":*")
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

// genericGetCaller asks for every feature of n random users, as getCaller,
// through a client that knows the API only from its descriptors: the
// request is encoded and the response decoded by reflection (dynamicpb),
// with gRPC's default codec, on connections without the server's fast
// codec.
func (w *benchWorld) genericGetCaller(i, n int) func(context.Context) error {
	rng := callerRand(i, "generic")
	conn := w.genericConns[i%len(w.genericConns)]
	msgs := larderv1.File_larder_v1_larder_proto.Messages()
	reqDesc, respDesc := msgs.ByName("GetFeaturesRequest"), msgs.ByName("GetFeaturesResponse")
	keyDesc := msgs.ByName("EntityKey")
	keysField, featuresField := reqDesc.Fields().ByName("keys"), reqDesc.Fields().ByName("features")
	intField := keyDesc.Fields().ByName("int64_value")
	method := "/" + string(larderv1.File_larder_v1_larder_proto.Services().ByName("FeatureService").FullName()) + "/GetFeatures"
	return func(ctx context.Context) error {
		req := dynamicpb.NewMessage(reqDesc)
		keys := req.Mutable(keysField).List()
		for range n {
			k := dynamicpb.NewMessage(keyDesc)
			k.Set(intField, protoreflect.ValueOfInt64(1+rng.Int64N(int64(w.users))))
			keys.Append(protoreflect.ValueOfMessage(k))
		}
		req.Mutable(featuresField).List().Append(protoreflect.ValueOfString(benchUserView + ":*"))
		resp := dynamicpb.NewMessage(respDesc)
		if err := conn.Invoke(ctx, method, req, resp); err != nil {
			return err
		}
		if len(resp.GetUnknown()) != 0 || !resp.IsValid() {
			return errors.New("the generic client could not decode the response")
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
	// serverCPU and selfCPU are the CPU time per call of the server
	// process (noCPU for a call that does not go through it) and of the
	// bench process; redisCPU that of the redis-server child (noCPU
	// without one).
	serverCPU, selfCPU, redisCPU time.Duration
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
	// done counts every call that completed, warm-ups included: the CPU
	// times cover them all.
	done int64
	// redis is set when the CPU times include the redis-server child's.
	redis bool
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
		done     atomic.Int64
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
				done.Add(1)
				if !t0.Before(from) {
					lat = append(lat, t1.Sub(t0))
					lastEnd[i] = t1
				}
			}
			c.lats[i] = lat
		}()
	}
	wg.Wait()
	c.done += done.Load()
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
	r := cellResult{
		call: c.call.name, conc: c.conc, n: n, elapsed: c.elapsed,
		rps: float64(n) / c.elapsed.Seconds(),
		p50: Percentile(all, 0.50), p95: Percentile(all, 0.95), p99: Percentile(all, 0.99), p999: Percentile(all, 0.999),
		cpu:       c.cpu.share(),
		selfCPU:   perCall(c.cpu.self, c.done, c.cpu.bad),
		serverCPU: noCPU, redisCPU: noCPU,
	}
	if c.call.served {
		r.serverCPU = perCall(c.cpu.server, c.done, c.cpu.bad)
	}
	if c.redis {
		r.redisCPU = perCall(c.cpu.redis, c.done, c.cpu.bad)
	}
	return r, nil
}

// Percentile returns the q-quantile of sorted by the nearest-rank method: the
// smallest value with at least q of the values at or below it. sorted must
// not be empty.
func Percentile(sorted []time.Duration, q float64) time.Duration {
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
		header: []string{"call", "concurrency", "requests", "RPS", "p50", "p95", "p99", "p999", "server CPU", "callers CPU", "redis CPU", "others"},
		left:   []bool{true},
	}
	for _, r := range results {
		t.rows = append(t.rows, []string{
			r.call, strconv.Itoa(r.conc), strconv.Itoa(r.n), strconv.FormatFloat(r.rps, 'f', 0, 64),
			FormatLatency(r.p50), FormatLatency(r.p95), FormatLatency(r.p99), FormatLatency(r.p999),
			cpuText(r.serverCPU), cpuText(r.selfCPU), cpuText(r.redisCPU), orDash(percent(r.cpu.others), r.cpu.ok),
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

// has reports whether every one of calls was measured at conc.
func (ix cellIndex) has(conc int, calls ...string) bool {
	for _, c := range calls {
		if _, ok := ix[c+"@"+strconv.Itoa(conc)]; !ok {
			return false
		}
	}
	return true
}

// ratioTable compares, at each concurrency, larder's figures with the sum of
// their floors, against the goals they are held to, and with the composed
// floors. A figure whose cells were not all measured (--calls) is left out.
func ratioTable(results []cellResult, concurrency []int) textTable {
	cells := indexCells(results)
	t := textTable{
		header: []string{"concurrency", "figure", "larder", "floor", "ratio", "goal"},
		left:   []bool{true, true, false, false, false, true},
	}
	for _, c := range concurrency {
		get := func(call string) cellResult { return cells.get(call, c) }
		latency := func(call string, goal bool, floors ...string) {
			if !cells.has(c, append([]string{call}, floors...)...) {
				return
			}
			var sum time.Duration
			for _, f := range floors {
				sum += get(f).p50
			}
			label := call + " p50 / " + strings.Join(floors, " + ")
			if len(floors) > 1 {
				label = call + " p50 / (" + strings.Join(floors, " + ") + ")"
			}
			ratio := float64(get(call).p50) / float64(sum)
			shown, verdict := strconv.FormatFloat(ratio, 'f', 2, 64), "-"
			if goal {
				met := func(r float64) bool { return r <= goalLatencyRatio }
				shown, verdict = agreeing(ratio, 2, met), goalVerdict(fmt.Sprintf("≤ %.1f×", goalLatencyRatio), met(ratio))
			}
			t.rows = append(t.rows, []string{strconv.Itoa(c), label, FormatLatency(get(call).p50), FormatLatency(sum), shown + "×", verdict})
		}
		throughput := func(call, floor string, goal bool) {
			if !cells.has(c, call, floor) {
				return
			}
			rps, floorRPS := get(call).rps, get(floor).rps
			ratio := rps / floorRPS
			shown, verdict := strconv.FormatFloat(100*ratio, 'f', 0, 64), "-"
			if goal {
				met := func(percent float64) bool { return percent/100 >= goalThroughputRatio }
				shown, verdict = agreeing(100*ratio, 0, met), goalVerdict(fmt.Sprintf("≥ %.0f%%", 100*goalThroughputRatio), ratio >= goalThroughputRatio)
			}
			t.rows = append(t.rows, []string{strconv.Itoa(c), call + " RPS / " + floor + " RPS",
				strconv.FormatFloat(rps, 'f', 0, 64), strconv.FormatFloat(floorRPS, 'f', 0, 64),
				shown + "%", verdict})
		}
		latency(CallGet1, true, CallEmpty, CallRedis1)
		latency(CallGet100, false, CallEmpty, CallRedis101)
		latency(CallGetGeneric, false, CallGet100)
		latency(CallRank, true, CallEmpty, CallRedis101, CallModel)
		throughput(CallGet1, CallEmpty, true)
		// Against the composed floors: larder's own cost.
		latency(CallGet1, false, CallServed1)
		latency(CallRank, false, CallServedRank)
		throughput(CallGet1, CallServed1, false)
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
		if !cells.has(c, CallRank, CallRankBatched) {
			continue
		}
		plain, batched := cells.get(CallRank, c), cells.get(CallRankBatched, c)
		t.rows = append(t.rows, []string{strconv.Itoa(c),
			strconv.FormatFloat(plain.rps, 'f', 0, 64), strconv.FormatFloat(batched.rps, 'f', 0, 64),
			fmt.Sprintf("%.2f×", batched.rps/plain.rps),
			FormatLatency(plain.p50), FormatLatency(batched.p50), FormatLatency(plain.p99), FormatLatency(batched.p99)})
	}
	return t
}

// agreeing formats v, a figure held to a goal that met tells, with digits
// decimals, or with more when v so rounded would meet the goal where v
// does not, or the other way round (1.504 is 1.504 against ≤ 1.5, not
// 1.50), so that the figure shown agrees with the verdict.
func agreeing(v float64, digits int, met func(float64) bool) string {
	for ; digits <= 6; digits++ {
		s := strconv.FormatFloat(v, 'f', digits, 64)
		if shown, err := strconv.ParseFloat(s, 64); err == nil && met(shown) == met(v) {
			return s
		}
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
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

// FormatLatency prints d with three significant digits or so.
func FormatLatency(d time.Duration) string {
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
