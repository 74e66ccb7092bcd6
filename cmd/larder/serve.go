package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/spf13/cobra"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/models"
	"github.com/larder-dev/larder/server"
)

func (a *app) serveCommand() *cobra.Command {
	var (
		listen string
		drain  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve GetFeatures, Rank and ListViews over gRPC",
		Long: `serve answers the FeatureService API from the live generations in Redis,
with gRPC health checks and server reflection (grpcurl works without .proto
files). On SIGTERM or SIGINT it stops accepting connections and lets requests
in flight finish before exiting.

With the embedded store (no redis.addresses), serve materializes every view
at start-up, since the embedded store starts empty.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			p, err := a.loadProject()
			if err != nil {
				return err
			}
			if listen != "" {
				p.Server.Listen = listen
			}
			b, err := a.openStore(ctx, p)
			if err != nil {
				return err
			}
			defer b.Close()
			if b.embedded != nil {
				fmt.Fprintf(a.stderr, "embedded Redis at %s: materializing every view first\n", b.embedded.Addr())
				if _, err := a.materialize(ctx, p, b, p.Views); err != nil {
					return err
				}
			}
			srv, err := a.startServer(ctx, p, b, p.Server.Listen)
			if err != nil {
				return err
			}
			defer srv.close()
			fmt.Fprintf(a.stderr, "serving larder.v1.FeatureService for project %s on %s\n", p.Name, srv.addr)
			if b.embedded != nil {
				fmt.Fprintf(a.stderr, "inspect it with: larder --redis %s views\n", b.embedded.Addr())
			}
			err = srv.wait(ctx, drain)
			fmt.Fprintln(a.stderr, "stopped")
			return err
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "", "address to listen on (default: server.listen, "+larder.DefaultListen+")")
	cmd.Flags().DurationVar(&drain, "drain", 15*time.Second, "how long requests in flight may take to finish on shutdown")
	return cmd
}

// running is a started server with what it needs to stop cleanly.
type running struct {
	addr    string
	grpc    *server.GRPC
	lis     net.Listener
	runtime *models.Runtime
	models  []*models.Model
	cancel  context.CancelFunc
	watched chan struct{}
}

// startServer loads the rankers' models, starts watching publishes and
// listens on addr ("127.0.0.1:0" picks a free port). Serving starts with wait.
func (a *app) startServer(ctx context.Context, p *larder.Project, b *backend, addr string) (*running, error) {
	r := &running{}
	ok := false
	defer func() {
		if !ok {
			r.close()
		}
	}()
	loaded := map[string]server.Model{}
	if len(p.Rankers) > 0 {
		lib, err := models.EnsureLibrary(ctx, a.stderr)
		if err == nil {
			r.runtime, err = models.NewRuntime(lib)
		}
		if err != nil {
			// Serve anyway: Rank answers in degraded mode (precomputed
			// order, flagged) until the library is installed.
			fmt.Fprintf(a.stderr, "warning: ONNX Runtime is unavailable, so Rank answers in degraded mode: %v\n", err)
			for _, rk := range p.Rankers {
				loaded[rk.Name] = unavailableModel{err: err}
			}
		}
		for _, rk := range p.Rankers {
			if r.runtime == nil {
				break
			}
			m, err := r.runtime.Load(p.Path(rk.Model), models.Spec{Input: rk.ModelInput, Output: rk.ModelOutput, Features: len(rk.Inputs)})
			if err != nil {
				return nil, fmt.Errorf("ranker %s: %w", rk.Name, err)
			}
			r.models = append(r.models, m)
			loaded[rk.Name] = m
		}
	}
	svc, err := server.New(server.Config{Project: p, Store: b.store, Models: loaded, Logger: a.logger, Now: a.now})
	if err != nil {
		return nil, err
	}
	r.lis, err = net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w (set server.listen or pass --listen)", addr, err)
	}
	r.addr = r.lis.Addr().String()
	r.grpc = server.NewGRPC(svc, a.logger)

	var watchCtx context.Context
	watchCtx, r.cancel = context.WithCancel(context.WithoutCancel(ctx))
	r.watched = make(chan struct{})
	go func() {
		defer close(r.watched)
		if err := b.store.Watch(watchCtx); err != nil && !errors.Is(err, context.Canceled) {
			a.logger.Error("watching publishes stopped", "err", err)
		}
	}()
	ok = true
	return r, nil
}

// wait serves until ctx ends, then drains.
func (r *running) wait(ctx context.Context, drain time.Duration) error {
	return r.grpc.Serve(ctx, r.lis, drain)
}

func (r *running) close() {
	if r.cancel != nil {
		r.cancel()
		<-r.watched
	}
	for _, m := range r.models {
		_ = m.Close()
	}
	if r.runtime != nil {
		_ = r.runtime.Close()
	}
}

// unavailableModel stands in for a ranker's model when ONNX Runtime cannot be
// loaded: every Score fails, so Rank serves in degraded mode.
type unavailableModel struct{ err error }

func (m unavailableModel) Score(context.Context, []float32, int, []float32) error {
	return fmt.Errorf("ONNX Runtime unavailable: %w", m.err)
}

func (unavailableModel) Version() string { return "unavailable" }
