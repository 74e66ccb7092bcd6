package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/bench"
)

// benchServerEnv is added to the environment of the server process larder
// bench starts. Tests set it so that their binary runs as larder.
var benchServerEnv []string

func (a *app) benchCommand() *cobra.Command {
	o := bench.Defaults()
	var quick bool
	var serveChild string
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Load-test GetFeatures and Rank, each next to its floor",
		Long: `bench measures the serving path under load, and the floors under it, in one
run on this machine. It builds its own world: a redis-server child process on
a free loopback port (or the server named by --redis), a synthetic project of
users and items with 20 float64 features each written as generations, a
ranker over 10 user and 10 item features scored by a random 20→64→1 MLP in
ONNX Runtime, and the server that larder serve runs, on 127.0.0.1:0, in a
process of its own (the larder binary started again), so that its CPU time
per call is measured apart from the callers'.

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
--calls measures some of the calls only, to compare builds in shorter runs.

The --config flag is ignored. With --redis, bench writes keys under
larder:larderbench: on that server and deletes them when it ends.`,
		Example: `  larder bench                          # about three minutes
  larder bench --quick                  # a few seconds: a smoke test
  larder bench --concurrency 16 --duration 10s --cpuprofile rank.pprof
  larder bench --concurrency 64 --cpuprofile get.pprof --profile-call GetFeatures-1x20
  larder bench --calls empty-call,grpc+redis-1,GetFeatures-1x20 --concurrency 64`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Redis, o.Stdout, o.Stderr, o.Logger, o.Now = a.redisAddr, a.stdout, a.stderr, a.logger, a.now
			if serveChild != "" {
				return a.runBenchServer(cmd.Context(), o, serveChild)
			}
			if quick {
				quick := map[string]func(){
					"duration":    func() { o.Duration = 200 * time.Millisecond },
					"warmup":      func() { o.Warmup = 50 * time.Millisecond },
					"rounds":      func() { o.Rounds = 2 },
					"concurrency": func() { o.Concurrency = []int{1, 4} },
					"users":       func() { o.Users = 2000 },
					"items":       func() { o.Items = 500 },
				}
				for name, set := range quick {
					if !cmd.Flags().Changed(name) {
						set()
					}
				}
			}
			o.Env = benchServerEnv
			return bench.Run(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.DurationVar(&o.Duration, "duration", o.Duration, "how long each call is measured at each concurrency")
	f.DurationVar(&o.Warmup, "warmup", o.Warmup, "how long each call runs before it is measured")
	f.IntVar(&o.Rounds, "rounds", o.Rounds, "slices in which the calls at one concurrency take turns")
	f.IntSliceVar(&o.Concurrency, "concurrency", o.Concurrency, "the numbers of concurrent callers, comma-separated")
	f.IntVar(&o.Conns, "conns", o.Conns, "gRPC client connections the callers share")
	f.StringSliceVar(&o.Calls, "calls", nil, "measure only these calls, comma-separated names from the table (all by default); the ratios that need another call are left out")
	f.IntVar(&o.Users, "users", o.Users, "users in the synthetic project")
	f.IntVar(&o.Items, "items", o.Items, "items in the synthetic project")
	f.BoolVar(&quick, "quick", false, "a smoke test: 200ms per call, 50ms warm-up, 2 rounds, concurrency 1 and 4, 2000 users, 500 items (flags given explicitly win)")
	f.BoolVar(&o.Markdown, "markdown", false, "print the tables as Markdown")
	f.BoolVar(&o.Batching, "batching", false, "also measure Rank-batched: Rank of a second ranker with the same model and batching (max_delay, max_rows, max_queue from the --batch-* flags, or their defaults)")
	f.DurationVar(&o.Batch.MaxDelay, "batch-max-delay", 0, "batching.max_delay of the Rank-batched ranker (0: the default, "+larder.DefaultBatchMaxDelay.String()+")")
	f.IntVar(&o.Batch.MaxRows, "batch-max-rows", 0, "batching.max_rows of the Rank-batched ranker (0: the default, "+strconv.Itoa(larder.DefaultBatchMaxRows)+")")
	f.IntVar(&o.Batch.MaxQueue, "batch-max-queue", 0, "batching.max_queue of the Rank-batched ranker (0: the default, "+strconv.Itoa(larder.DefaultBatchMaxQueue)+")")
	f.BoolVar(&o.Heavy, "heavy", false, "score with a heavier MLP, 20→256→256→1, instead of the example's 20→64→1")
	f.StringVar(&o.CPUProfile, "cpuprofile", "", "after the measurements, run the --profile-call call once more at each concurrency and write a CPU profile of the server process to this file, and one of the callers to this file with .callers added")
	f.StringVar(&o.ProfileCall, "profile-call", bench.CallRank, "the call --cpuprofile profiles, one of the names in the table (such as "+bench.CallGet1+" or "+bench.CallEmpty+")")
	f.StringVar(&serveChild, "serve-child", "", "run as the server process of a bench whose world is in this folder")
	_ = f.MarkHidden("serve-child")
	return cmd
}

// runBenchServer is the server process of a bench: it serves the bench
// world that the bench process wrote into Redis and dir with larder's
// server, plus the composed floors, prints its address, and serves until
// its standard input closes.
func (a *app) runBenchServer(ctx context.Context, o bench.Options, dir string) error {
	if a.ownProcess {
		tuneServerGC()
	}
	sw, err := bench.NewServerWorld(ctx, o, dir)
	if sw != nil {
		defer sw.Close()
	}
	if err != nil {
		return err
	}
	b := &backend{client: sw.Client, store: sw.Store}
	defer b.Close()
	srv, err := a.startServer(ctx, sw.Project, b, "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer srv.close()
	srv.grpc.Server.RegisterService(sw.FloorService(srv.svc.Models()[bench.Ranker]), nil)

	serveCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	go func() {
		// The bench process closes our standard input to stop us.
		_, _ = io.Copy(io.Discard, a.stdin)
		stop()
	}()
	served := make(chan error, 1)
	go func() { served <- srv.wait(serveCtx, 5*time.Second) }()
	fmt.Fprintln(a.stdout, bench.ServingPrefix+srv.addr)
	return <-served
}
