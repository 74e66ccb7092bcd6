// Command larder is the single binary of larder: it serves the gRPC API,
// runs materialization jobs, and lets operators inspect what is stored.
//
//	larder demo                 # the whole hybrid path on the embedded store
//	larder init FILES...        # a starter larder.yaml from Parquet files
//	larder validate             # check larder.yaml, report every problem
//	larder materialize [VIEW]   # compute views and publish new generations
//	larder serve                # serve GetFeatures, Rank and ListViews
//	larder reload RANKER        # swap in a ranker's new model while serving
//	larder rank RANKER KEY      # ask a running server to rank, --explain to see why
//	larder views | get | keys   # inspect the online store
//	larder runs [VIEW]          # what each materialization run did
//	larder cleanup              # delete expired and abandoned generations now
//	larder score                # score a Parquet file with a ranker's model, in batch
//	larder bench                # serving under load, next to its floors
//
// Wiring happens here only: the adapters (config, store, materializer,
// models, server) never import each other.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"time"
	// The zones of larder.yaml's timezone fields load the same on every
	// machine, with or without a system time zone database.
	_ "time/tzdata"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/grpclog"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// go-redis logs through a process-wide logger; here is the one place
	// that owns the process.
	a := &app{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, now: time.Now, redisLog: &redisLogger{}, grpcLog: &grpcLogger{}, self: selfCommand(os.Args[0]), ownProcess: true}
	redis.SetLogger(a.redisLog)
	grpclog.SetLoggerV2(a.grpcLog)
	code := a.run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}
