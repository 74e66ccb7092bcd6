package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/models"
	"github.com/larder-dev/larder/server"
)

func (a *app) serveCommand() *cobra.Command {
	var (
		listen        string
		metricsListen string
		adminListen   string
		drain         time.Duration
		watch         bool
		watchConfig   bool
		schedule      bool
		workerCount   int
		ingestStreams bool
		maxConcurrent int
		deadline      time.Duration
		tlsCert       string
		tlsKey        string
		tlsClientCA   string
		traces        traceSettings
		consoleAddr   string
		httpListen    string
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve GetFeatures, Rank and ListViews over gRPC",
		Long: `serve answers the FeatureService API from the live generations in Redis,
with gRPC health checks and server reflection (grpcurl works without .proto
files), and the AdminService (larder reload). On SIGTERM or SIGINT it stops
accepting connections and lets requests in flight finish before exiting.

The AdminService can swap models, so anyone who reaches it can. With
--admin-listen (or server.admin_listen) it is served on that address alone,
with its own health checks and reflection, and the main address answers its
methods with UNIMPLEMENTED: give it a loopback or private address, such as
127.0.0.1:50052. Without either, it is served on the main address.

serve reloads the project file on SIGHUP and when the file changes
(--watch-config): views and rankers added, removed or changed apply at once,
all or nothing, while requests keep being served; a file that does not load,
or a model that does not fit, is refused and the previous configuration keeps
serving. The server, redis, scheduler and jobs blocks apply at the next
restart, and a serve that runs --schedule, --workers or --ingest takes no
reload. A view whose schema changed keeps being served from the newest
generation of the schema the running configuration has, until the server
takes the new one.

A ranker's model is reloaded when its file is replaced or rewritten (and on
larder reload): the new model is checked and swapped in while requests keep
being served; a model that does not fit is refused and the old one keeps
serving. With --metrics-listen (or server.metrics_listen), Prometheus metrics
are served at http://ADDR/metrics. With --http (or server.http_listen),
GetFeatures, Rank, ListViews and Push are served as HTTP/JSON too (POST
/v1/features, /v1/rank, /v1/views, /v1/push; see docs/api.md).

Every request is bounded: in cost (server.max_request_cells and
server.max_response_bytes), in time (server.default_deadline for a request
that sets no deadline, server.max_deadline at most) and in number: past
server.max_concurrent_requests (or --max-concurrent-requests), FeatureService
and IngestService requests are refused at once with RESOURCE_EXHAUSTED; health
checks and the AdminService never are.

With server.tls_cert_file and server.tls_key_file (or --tls-cert-file and
--tls-key-file), every listener speaks TLS only; with server.tls_client_ca_file
(or --tls-client-ca-file), every client must present a certificate its
authorities signed. With server.auth, every call but a health check needs a
bearer token or a client certificate with a role (read, write or admin), and
refuses the others with UNAUTHENTICATED or PERMISSION_DENIED. Every call of
the AdminService and the JobService is written to standard error as an
audit line (msg=audit), whatever --log-level says, with its caller, peer,
method and outcome. server.reflection: false turns reflection off.

Every response carries its request id in the x-request-id header (the
caller's, when it sent a sane one), and every log line of the request
carries it as request_id; --log-level debug logs every request, and
--log-format json writes one JSON object a line. With --trace-otlp ADDR (an
OTLP gRPC collector) or --trace-stdout, every call but health checks is
traced: a span per call, with the store read and the model run as children.
Tracing is off by default and costs nothing then.

With the embedded store (no redis.addresses), serve materializes every view
at start-up, since the embedded store starts empty.

With --schedule, serve also runs the views' cron schedules, as
` + "`larder schedule`" + ` does, in this process: for one machine, or the embedded store. With
--workers N, it also processes N jobs at a time from the job queue, as
` + "`larder worker`" + ` does. The AdminService's JobService (submit, get, list and cancel
jobs) is served whenever jobs can run: with a Redis server (workers may run
elsewhere) or with --workers. Every server deletes, every
scheduler.sweep_interval, the generations whose grace period has ended and
those abandoned by killed runs.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			p, err := a.loadProject()
			if err != nil {
				return err
			}
			a.noFetch = true
			if workerCount < 0 {
				return fmt.Errorf("--workers %d: want 0 (no worker in this process) or more", workerCount)
			}
			// prepare applies the command line over the project file's
			// server block, at start-up and at each reload.
			prepare := func(p *larder.Project) error {
				if listen != "" {
					p.Server.Listen = listen
				}
				if metricsListen != "" {
					p.Server.MetricsListen = metricsListen
				}
				if adminListen != "" {
					p.Server.AdminListen = adminListen
				}
				if httpListen != "" {
					p.Server.HTTPListen = httpListen
				}
				if err := limitFlags(&p.Server, maxConcurrent, deadline); err != nil {
					return err
				}
				return tlsFlags(&p.Server, tlsCert, tlsKey, tlsClientCA)
			}
			if err := prepare(p); err != nil {
				return err
			}
			// The certificates and tokens are read before anything starts,
			// so that a mistake in them stops serve at once.
			sec, err := a.loadSecurity(p)
			if err != nil {
				return err
			}
			// So are the addresses: one serve cannot listen on stops it
			// before it materializes anything.
			ls, err := a.listenFirst(p.Server, listenFlags{listen: listen != "", admin: adminListen != "", metrics: metricsListen != "",
				http: httpListen != "", console: consoleAddr})
			if err != nil {
				return err
			}
			defer ls.close()
			tr, err := a.newTracing(ctx, p, traces)
			if err != nil {
				return err
			}
			// Closed last, after the requests in flight have finished.
			defer tr.close(ctx)
			// serve starts while Redis is down, NOT_SERVING until it answers.
			b, err := a.openStoreWith(ctx, p, true)
			if err != nil {
				return err
			}
			defer b.Close()
			// A server only serves: one that also materializes (into
			// its embedded store, or as a worker or scheduler) or
			// ingests keeps Go's default, its heap being the runs'.
			if a.ownProcess && b.embedded == nil && workerCount == 0 && !schedule && !ingestStreams {
				tuneServerGC()
			}
			if err := a.checkEviction(ctx, p, b); err != nil {
				return err
			}
			if b.embedded != nil {
				fmt.Fprintf(a.stderr, "embedded Redis at %s: materializing every view first\n", b.embedded.Addr())
				if _, err := a.materialize(ctx, p, b, a.embeddedRunnable(p.Views), larder.TriggerStartup); err != nil {
					return err
				}
			}
			srv, err := a.startServerWith(ctx, p, b, serveOptions{
				addr:        p.Server.Listen,
				metricsAddr: p.Server.MetricsListen,
				adminAddr:   p.Server.AdminListen,
				watchModels: watch,
				schedule:    schedule,
				workers:     workerCount,
				ingest:      ingestStreams,
				security:    sec,
				tracing:     tr,
				listeners:   *ls,
				console:     consoleAddr,
				http:        p.Server.HTTPListen,
			})
			if err != nil {
				return err
			}
			defer srv.close()
			reloader := &configReloader{a: a, r: srv, prepare: prepare}
			var inProcess []string
			if schedule {
				inProcess = append(inProcess, "--schedule")
			}
			if workerCount > 0 {
				inProcess = append(inProcess, "--workers")
			}
			if ingestStreams {
				inProcess = append(inProcess, "--ingest")
			}
			reloader.inProcess = strings.Join(inProcess, " and ")
			reloader.listen(watchConfig)
			a.warnExposed(p, sec, srv.lis, srv.adminLis)
			fmt.Fprintf(a.stderr, "%s\n", sec.describe(p))
			if srv.metricsAddr != "" {
				fmt.Fprintf(a.stderr, "metrics at http://%s/metrics\n", srv.metricsAddr)
			}
			if srv.adminAddr != "" {
				fmt.Fprintf(a.stderr, "serving larder.v1.AdminService on %s\n", srv.adminAddr)
			}
			fmt.Fprintf(a.stderr, "serving larder.v1.FeatureService for project %s on %s\n", p.Name, srv.addr)
			if b.embedded != nil {
				fmt.Fprintf(a.stderr, "inspect it with: %s --redis %s -c %s views\n", selfCommand(a.self), b.embedded.Addr(), a.configPath)
			}
			reloadCtx, stopReload := context.WithCancel(ctx)
			var reloads sync.WaitGroup
			reloads.Go(func() { reloader.loop(reloadCtx) })
			err = srv.wait(ctx, drain)
			stopReload()
			reloads.Wait()
			fmt.Fprintln(a.stderr, "stopped")
			return err
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "", "address to listen on (default: server.listen, "+larder.DefaultListen+")")
	cmd.Flags().StringVar(&metricsListen, "metrics-listen", "", "address of the Prometheus /metrics endpoint, such as 127.0.0.1:9464 (default: server.metrics_listen; none when both are empty)")
	cmd.Flags().StringVar(&adminListen, "admin-listen", "", "address of a listener for the AdminService alone, such as 127.0.0.1:50052 (default: server.admin_listen; when both are empty, the AdminService is served on --listen)")
	cmd.Flags().StringVar(&httpListen, "http", "", "address of the HTTP/JSON gateway, such as 127.0.0.1:8080: POST /v1/features, /v1/rank, /v1/views and /v1/push (default: server.http_listen; none when both are empty)")
	cmd.Flags().StringVar(&consoleAddr, "console", "", "address of the read-only web console, such as 127.0.0.1:9465: views, a key lookup and the rankers; the admin role only, with server.auth (default: none)")
	cmd.Flags().DurationVar(&drain, "drain", 15*time.Second, "how long requests in flight may take to finish on shutdown")
	cmd.Flags().BoolVar(&watch, "watch-models", true, "reload a ranker's model when its file changes")
	cmd.Flags().BoolVar(&watchConfig, "watch-config", true, "reload the project file when it changes (it is reloaded on SIGHUP either way)")
	cmd.Flags().BoolVar(&schedule, "schedule", false, "also run the views' cron schedules in this process, as \"larder schedule\" does")
	cmd.Flags().IntVar(&workerCount, "workers", 0, "also process this many jobs at a time from the job queue, as \"larder worker\" does")
	cmd.Flags().BoolVar(&ingestStreams, "ingest", false, "also apply the events of the project's streams to their views, as \"larder ingest\" does")
	cmd.Flags().IntVar(&maxConcurrent, "max-concurrent-requests", 0,
		fmt.Sprintf("the most FeatureService and IngestService requests (Push) handled at once; more are refused with RESOURCE_EXHAUSTED (default: server.max_concurrent_requests, %d)", larder.DefaultMaxConcurrentRequests))
	cmd.Flags().DurationVar(&deadline, "default-deadline", 0,
		fmt.Sprintf("how long a request whose client set no deadline may take (default: server.default_deadline, %s)", larder.DurationText(larder.DefaultDeadline)))
	cmd.Flags().StringVar(&tlsCert, "tls-cert-file", "", "the server's certificate (PEM): every listener speaks TLS only (default: server.tls_cert_file)")
	cmd.Flags().StringVar(&tlsKey, "tls-key-file", "", "the key of the server's certificate (default: server.tls_key_file)")
	traceFlags(cmd, &traces)
	cmd.Flags().StringVar(&tlsClientCA, "tls-client-ca-file", "", "the authorities (PEM) that sign client certificates: every client must present one (default: server.tls_client_ca_file)")
	return cmd
}

// tlsFlags applies the TLS files given on serve's command line to s, over
// the project file's: a path on the command line is relative to the
// current folder, not to the project's. A certificate and its key come
// together, and a client CA needs them.
func tlsFlags(s *larder.Server, cert, key, clientCA string) error {
	for _, f := range []struct {
		flag string
		to   *string
	}{{cert, &s.TLSCertFile}, {key, &s.TLSKeyFile}, {clientCA, &s.TLSClientCAFile}} {
		if f.flag == "" {
			continue
		}
		abs, err := filepath.Abs(f.flag)
		if err != nil {
			return err
		}
		*f.to = abs
	}
	switch {
	case s.TLSCertFile != "" && s.TLSKeyFile == "":
		return errors.New("--tls-cert-file needs --tls-key-file (or server.tls_key_file): the key of the certificate")
	case s.TLSKeyFile != "" && s.TLSCertFile == "":
		return errors.New("--tls-key-file needs --tls-cert-file (or server.tls_cert_file): the certificate of the key")
	case s.TLSClientCAFile != "" && s.TLSCertFile == "":
		return errors.New("--tls-client-ca-file needs --tls-cert-file and --tls-key-file: the server's own certificate comes first")
	}
	return nil
}

// limitFlags applies the limits given on serve's command line to s, over
// the project file's; zero leaves a setting as it is.
func limitFlags(s *larder.Server, maxConcurrent int, deadline time.Duration) error {
	switch {
	case maxConcurrent < 0:
		return fmt.Errorf("--max-concurrent-requests %d: want a positive number, such as %d", maxConcurrent, larder.DefaultMaxConcurrentRequests)
	case deadline < 0:
		return fmt.Errorf("--default-deadline %s: want a positive duration, such as %s", deadline, larder.DurationText(larder.DefaultDeadline))
	case deadline > s.MaxDeadline:
		return fmt.Errorf("--default-deadline %s: longer than server.max_deadline (%s); raise max_deadline in the project file, or give a shorter deadline", deadline, larder.DurationText(s.MaxDeadline))
	}
	if maxConcurrent > 0 {
		s.MaxConcurrentRequests = maxConcurrent
	}
	if deadline > 0 {
		s.DefaultDeadline = deadline
	}
	return nil
}

// serveOptions are what startServerWith starts besides the gRPC server.
type serveOptions struct {
	addr string // the gRPC address; "127.0.0.1:0" picks a free port
	// metricsAddr, when not empty, is where /metrics is served.
	metricsAddr string
	// adminAddr, when not empty, is where the AdminService is served, alone;
	// addr then does not serve it. When empty, addr serves it.
	adminAddr string
	// watchModels reloads a ranker's model when its file changes.
	watchModels bool
	// schedule runs the views' schedules in the server's process.
	schedule bool
	// workers, when positive, processes that many jobs at a time.
	workers int
	// ingest applies the events of the project's streams.
	ingest bool
	// security, when set, is the TLS and the authentication of every
	// listener; nil serves in plaintext and lets everyone in.
	security *serverSecurity
	// tracing, when set, traces every request; nil traces nothing.
	tracing *tracing
	// listeners are those already listening on addr, adminAddr,
	// metricsAddr, http and console (nil for the others, which the server
	// opens itself); the server takes them over.
	listeners listeners
	// console, when not empty, is where the web console is served.
	console string
	// http, when not empty, is where the HTTP/JSON gateway is served.
	http string
}

// healthInterval is how often serve checks that Redis answers and that a
// view is live, for its health status.
const healthInterval = time.Second

// modelDebounce is how long the model watcher waits after the last change
// to a model file before it reloads: editors and copies write a file in
// several steps.
const modelDebounce = 200 * time.Millisecond

// running is a started server with what it needs to stop cleanly.
type running struct {
	addr        string
	metricsAddr string
	adminAddr   string // empty when grpc serves the AdminService
	grpc        *server.GRPC
	admin       *server.GRPC // nil when grpc serves the AdminService
	svc         *server.Service
	lis         net.Listener
	adminLis    net.Listener
	metrics     *metricsEndpoint
	runtime     *models.Runtime
	models      []*models.Model // loaded at start, until svc owns them
	cancel      context.CancelFunc
	background  sync.WaitGroup // the publish and model watchers

	// What a reload of larder.yaml replaces (see reloadConfig).
	b          *backend
	opts       serveOptions
	watchCtx   context.Context
	project    atomic.Pointer[larder.Project]
	freshness  atomic.Pointer[server.FreshnessFunc]
	reg        *prometheus.Registry // nil without a metrics endpoint
	freshColl  prometheus.Collector
	srvMetrics *server.Metrics
	reloadMu   sync.Mutex
	// stopModels stops the model watcher of the project served.
	stopModels context.CancelFunc
}

// startServer loads the rankers' models, starts watching publishes and
// listens on addr ("127.0.0.1:0" picks a free port). Serving starts with wait.
func (a *app) startServer(ctx context.Context, p *larder.Project, b *backend, addr string) (*running, error) {
	return a.startServerWith(ctx, p, b, serveOptions{addr: addr})
}

// startServerWith is startServer with metrics, the admin listener and
// model watching as opts ask.
func (a *app) startServerWith(ctx context.Context, p *larder.Project, b *backend, opts serveOptions) (*running, error) {
	r := &running{b: b, opts: opts}
	r.project.Store(p)
	ok := false
	defer func() {
		if !ok {
			// Nothing serves the listeners yet, so nothing else closes them.
			for _, lis := range []net.Listener{r.lis, r.adminLis} {
				if lis != nil {
					_ = lis.Close()
				}
			}
			r.close()
		}
	}()
	loaded := map[string]server.Model{}
	var ortErr error
	if len(p.Rankers) > 0 {
		// A server never downloads anything: the library is installed
		// beforehand (larder setup).
		var err error
		if r.runtime, err = models.OpenInstalled(); err != nil {
			// Serve anyway: Rank answers in degraded mode (precomputed
			// order, flagged) until the library is installed.
			ortErr = err
			if models.Supported {
				fmt.Fprintf(a.stderr, "warning: ONNX Runtime is unavailable, so Rank answers in degraded mode until it is installed (run `larder setup`, then restart): %v\n", err)
			} else {
				fmt.Fprintf(a.stderr, "warning: Rank answers in degraded mode: %v\n", err)
			}
			for _, rk := range p.Rankers {
				loaded[rk.Name] = unavailableModel{err: err}
			}
		}
		for _, rk := range p.Rankers {
			if r.runtime == nil {
				break
			}
			m, err := r.loadRanker(p, rk)
			if err != nil {
				return nil, fmt.Errorf("ranker %s: %w", rk.Name, err)
			}
			r.models = append(r.models, m)
			loaded[rk.Name] = m
		}
	}
	loadModel := func(rk *larder.Ranker) (server.Model, error) {
		if r.runtime == nil {
			return nil, fmt.Errorf("%w: ONNX Runtime is not loaded: %v", server.ErrModelUnavailable, ortErr)
		}
		m, err := r.loadRanker(p, rk)
		if err != nil {
			return nil, err // a nil interface, not a nil *models.Model
		}
		return m, nil
	}

	var metrics *server.Metrics
	var reg *prometheus.Registry
	if opts.metricsAddr != "" {
		reg = prometheus.NewRegistry()
		var err error
		if metrics, err = server.NewMetrics(reg); err != nil {
			return nil, err
		}
		r.reg, r.freshColl = reg, newFreshnessCollector(p, b.store, a.now, a.logger)
		reg.MustRegister(r.freshColl)
		lis := opts.listeners.metrics
		if lis == nil {
			var err error
			if lis, err = a.listenMetrics(opts.metricsAddr); err != nil {
				return nil, err
			}
		}
		e := a.serveMetricsOn(lis, reg)
		r.metricsAddr, r.metrics = e.addr, e
	}
	var opsReg prometheus.Registerer
	if reg != nil {
		opsReg = reg
	}
	ops, err := newOpsMetrics(opsReg)
	if err != nil {
		return nil, err
	}
	// Jobs can run when workers may take them: from Redis, anywhere, or
	// in this process.
	var jobs larder.JobQueue
	if b.embedded == nil || opts.workers > 0 {
		jobs = a.newQueue(p, b, ops.job)
	}

	var auth *server.Auth
	if opts.security != nil {
		auth = opts.security.auth
	}
	r.srvMetrics = metrics
	fresh := viewFreshness(p, b.store, a.now)
	r.freshness.Store(&fresh)
	freshness := func(ctx context.Context, v *larder.View) (larder.ViewFreshness, error) {
		return (*r.freshness.Load())(ctx, v)
	}
	svc, err := server.New(server.Config{Project: p, Store: b.store, Models: loaded, Logger: a.logger, Now: a.now, LoadModel: loadModel,
		Metrics: metrics, Jobs: jobs, Freshness: freshness, Auth: auth, AuditLogger: a.auditLogger(), Tracing: opts.tracing.provider()})
	if err != nil {
		return nil, err
	}
	r.svc, r.models = svc, nil // svc owns the models now, and closes those it replaces
	if r.lis = opts.listeners.grpc; r.lis == nil {
		if r.lis, err = net.Listen("tcp", opts.addr); err != nil {
			return nil, fmt.Errorf("listen on %s: %w (set server.listen or pass --listen)", opts.addr, err)
		}
	}
	r.addr = r.lis.Addr().String()
	grpcOpts := opts.security.serverOptions()
	if opts.adminAddr == "" {
		r.grpc = server.NewGRPC(svc, a.logger, grpcOpts...)
	} else {
		if r.adminLis = opts.listeners.admin; r.adminLis == nil {
			if r.adminLis, err = net.Listen("tcp", opts.adminAddr); err != nil {
				return nil, fmt.Errorf("admin: listen on %s: %w (set server.admin_listen or pass --admin-listen)", opts.adminAddr, err)
			}
		}
		r.adminAddr = r.adminLis.Addr().String()
		r.grpc = server.NewFeatureGRPC(svc, a.logger, grpcOpts...)
		r.admin = server.NewAdminGRPC(svc, a.logger, grpcOpts...)
	}

	var watchCtx context.Context
	watchCtx, r.cancel = context.WithCancel(context.WithoutCancel(ctx))
	r.watchCtx = watchCtx
	if err := a.startConsole(r); err != nil {
		return nil, err
	}
	if err := a.startHTTP(r); err != nil {
		return nil, err
	}
	// Cleanup keeps the newest generation of the schemas this server
	// reads, for as long as it runs.
	r.background.Go(func() {
		b.store.KeepReadersRegistered(watchCtx, func() []*larder.View { return r.project.Load().Views }, 0)
	})
	r.background.Go(func() {
		if err := b.store.Watch(watchCtx); err != nil && !errors.Is(err, context.Canceled) {
			a.logger.Error("watching publishes stopped", "err", err)
		}
	})
	r.background.Go(func() { server.WatchHealth(watchCtx, svc, healthInterval, r.grpc, r.admin) })
	switch {
	case opts.schedule:
		sc, err := a.startScheduling(watchCtx, p, b, ops)
		if err != nil {
			return nil, err
		}
		r.background.Go(sc.wait)
	default:
		r.background.Go(func() { a.sweep(watchCtx, b.store, p.Scheduler.SweepInterval, ops.swept) })
	}
	if opts.workers > 0 {
		w := a.startWorkers(watchCtx, p, b, ops, workerSettings{concurrency: opts.workers, grace: p.Scheduler.ShutdownGrace})
		r.background.Go(func() {
			if err := w.wait(); err != nil {
				a.logger.Error("processing jobs stopped", "err", err)
			}
		})
	}
	if opts.ingest {
		if len(p.Streams) == 0 {
			return nil, fmt.Errorf("--ingest: the project declares no streams: add a streams: entry to larder.yaml (see docs/configuration.md, Streams)")
		}
		var ingReg prometheus.Registerer
		if reg != nil {
			ingReg = reg
		}
		ing, err := a.startIngest(watchCtx, b, p.Streams, ingReg, ingestSettings{})
		if err != nil {
			return nil, err
		}
		r.background.Go(ing.wait)
	}
	a.watchModels(r, p)
	ok = true
	return r, nil
}

// watchModels starts reloading the models of p's rankers when their files
// change, in place of the watcher of the project served before, if any.
func (a *app) watchModels(r *running, p *larder.Project) {
	if r.stopModels != nil {
		r.stopModels()
		r.stopModels = nil
	}
	if !r.opts.watchModels || r.runtime == nil || len(p.Rankers) == 0 {
		return
	}
	w, err := a.newModelWatcher(p, r.svc)
	if err != nil {
		fmt.Fprintf(a.stderr, "warning: model files are not watched, so a changed model is only loaded by `larder reload`: %v\n", err)
		return
	}
	ctx, cancel := context.WithCancel(r.watchCtx)
	r.stopModels = cancel
	r.background.Go(func() { w.run(ctx) })
}

// loadRanker loads the model file of ranker rk of project p, checking that
// it has the ranker's input, output and input width.
func (r *running) loadRanker(p *larder.Project, rk *larder.Ranker) (*models.Model, error) {
	return r.runtime.Load(p.Path(rk.Model), models.Spec{Input: rk.ModelInput, Output: rk.ModelOutput, Features: len(rk.Inputs)})
}

// wait serves until ctx ends, then drains. With an admin listener, both
// servers drain at once; when one stops serving on its own, the other is
// drained too, and the error says which failed.
func (r *running) wait(ctx context.Context, drain time.Duration) error {
	if r.admin == nil {
		return r.grpc.Serve(ctx, r.lis, drain)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	adminErr := make(chan error, 1)
	go func() {
		err := r.admin.Serve(ctx, r.adminLis, drain)
		cancel()
		if err != nil {
			err = fmt.Errorf("admin: serving on %s: %w", r.adminAddr, err)
		}
		adminErr <- err
	}()
	err := r.grpc.Serve(ctx, r.lis, drain)
	cancel()
	if err != nil {
		err = fmt.Errorf("serving on %s: %w", r.addr, err)
	}
	return errors.Join(err, <-adminErr)
}

// close stops the watchers and the metrics endpoint, then closes the models
// the rankers serve with now (a model replaced by a reload was closed when
// its last request finished) and the runtime.
func (r *running) close() {
	if r.cancel != nil {
		r.cancel()
	}
	r.background.Wait()
	r.metrics.close()
	for _, m := range r.models {
		_ = m.Close()
	}
	if r.svc != nil {
		for _, m := range r.svc.Models() {
			if c, ok := m.(io.Closer); ok {
				_ = c.Close()
			}
		}
	}
	if r.runtime != nil {
		_ = r.runtime.Close()
	}
}

// modelWatcher reloads a ranker's model when its file changes. It watches
// the folders that hold the model files, not the files: editors and mv
// replace a file by renaming another over it, which a watch on the file
// itself would not follow.
type modelWatcher struct {
	a       *app
	svc     *server.Service
	fsw     *fsnotify.Watcher
	rankers map[string][]string // rankers by the clean path of their model file
}

func (a *app) newModelWatcher(p *larder.Project, svc *server.Service) (*modelWatcher, error) {
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	w := &modelWatcher{a: a, svc: svc, fsw: fsw, rankers: map[string][]string{}}
	dirs := map[string]bool{}
	for _, rk := range p.Rankers {
		path, err := filepath.Abs(p.Path(rk.Model))
		if err != nil {
			fsw.Close()
			return nil, fmt.Errorf("ranker %s: %w", rk.Name, err)
		}
		w.rankers[path] = append(w.rankers[path], rk.Name)
		dir := filepath.Dir(path)
		if dirs[dir] {
			continue
		}
		if err := fsw.Add(dir); err != nil {
			fsw.Close()
			return nil, fmt.Errorf("watch %s: %w", dir, err)
		}
		dirs[dir] = true
	}
	return w, nil
}

// run reloads changed models until ctx ends, then closes the watcher. A
// change is acted on once the file has been quiet for modelDebounce.
func (w *modelWatcher) run(ctx context.Context) {
	defer w.fsw.Close()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	changed := map[string]bool{}
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.fsw.Events:
			if !ok {
				return
			}
			path := filepath.Clean(ev.Name)
			if w.rankers[path] != nil && ev.Has(fsnotify.Write|fsnotify.Create|fsnotify.Rename) {
				changed[path] = true
				timer.Reset(modelDebounce)
			}
		case err, ok := <-w.fsw.Errors:
			if !ok {
				return
			}
			w.a.logger.Error("watching model files", "err", err)
		case <-timer.C:
			for path := range changed {
				for _, rk := range w.rankers[path] {
					w.reload(ctx, rk, path)
				}
			}
			clear(changed)
		}
	}
}

// reload reloads one ranker's model and reports the outcome. A refused
// model has been logged by the service, and the old one keeps serving.
func (w *modelWatcher) reload(ctx context.Context, ranker, path string) {
	old, current, err := w.svc.Reload(ctx, ranker)
	if err != nil {
		return
	}
	fmt.Fprintf(w.a.stderr, "ranker %s: reloaded %s: model %s -> %s\n", ranker, path, old, current)
}

// unavailableModel stands in for a ranker's model when ONNX Runtime cannot be
// loaded: every Score fails, so Rank serves in degraded mode.
type unavailableModel struct{ err error }

func (m unavailableModel) Score(context.Context, []float32, int, []float32) error {
	return fmt.Errorf("%w: ONNX Runtime cannot be loaded: %v", server.ErrModelUnavailable, m.err)
}

func (unavailableModel) Version() string { return "unavailable" }

// embeddedRunnable returns the views of those given that serve can
// materialize into its embedded store: all of them when ONNX Runtime loads,
// else all but prediction views and the views they feed, which it names in
// a warning. serve fetches nothing, so the library is the one installed.
func (a *app) embeddedRunnable(views []*larder.View) []*larder.View {
	rt, err := models.OpenInstalled()
	if err == nil {
		_ = rt.Close()
		return views
	}
	run, left := withoutModels(views)
	if len(left) > 0 {
		fmt.Fprintf(a.stderr, "warning: ONNX Runtime is unavailable, so serve materializes no prediction view, nor any view one feeds, and these serve nothing: %s: %v\n", strings.Join(left, ", "), err)
	}
	return run
}

// withoutModels splits views into those that run without a model and the
// names of the others: prediction views, and the views fed by one, however
// indirectly.
func withoutModels(views []*larder.View) (run []*larder.View, left []string) {
	needs := map[*larder.View]bool{}
	var need func(v *larder.View) bool
	need = func(v *larder.View) bool {
		if n, ok := needs[v]; ok {
			return n
		}
		needs[v] = v.Kind == larder.KindPrediction
		for _, d := range v.DependsOn() {
			if need(d) {
				needs[v] = true
			}
		}
		return needs[v]
	}
	for _, v := range views {
		if need(v) {
			left = append(left, v.Name)
		} else {
			run = append(run, v)
		}
	}
	return run, left
}
