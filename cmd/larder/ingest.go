package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/ingest"
)

func (a *app) ingestCommand() *cobra.Command {
	var (
		metricsListen string
		name          string
		statusEvery   time.Duration
		claimIdle     time.Duration
	)
	cmd := &cobra.Command{
		Use:   "ingest [STREAM...]",
		Short: "Apply the events of the project's streams to their views until interrupted",
		Long: `ingest consumes the events of the streams that larder.yaml declares (streams:),
every one of them or those named, and applies each event to its view. To a
latest view, as Push does: the entity's row is written when the event is not
older than the stored row, so a late or replayed event never moves a value
back. To an aggregate view: the event is added, once by its id, to its
entity's tile, so that the view's windows stay current.

A Redis stream is read as one consumer of the stream's consumer group, and
a Kafka topic as one member of its consumer group: run any number of ingest
processes for availability. An entry is acknowledged (an offset committed)
only once it is written; an entry left pending by a process that died is
taken over by another after --claim-idle, and the records of a Kafka member
that died are read again by the member that takes its partitions. An event that can never apply (a missing key,
a value of the wrong type, an event time more than a minute past this
host's clock) goes to the stream's dead-letter stream with the
reason, and is acknowledged.

A stream whose consumer stops on an error that retrying cannot mend (Kafka
brokers that refuse its password or certificate) is logged, and shows in
the status lines with the reason; once every stream it runs has stopped,
ingest ends with an error, for its supervisor to restart it and alert.

Every --status-every, ingest prints what it applied and how far behind each
stream it is; with --metrics-listen, Prometheus metrics say the same
(larder_ingest_events_total, larder_ingest_lag_entries,
larder_ingest_lag_seconds), and larder_ingest_stopped is 1 for a stream
whose consumer stopped. For the embedded store, or a small deployment,
` + "`larder serve --ingest`" + ` runs the same in the server's process.`,
		Example: `  larder ingest
  larder ingest clicks --metrics-listen 127.0.0.1:9467`,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			// A ticker of no interval panics; an idle time of zero would
			// take entries from a consumer still applying them.
			switch {
			case statusEvery <= 0:
				return fmt.Errorf("--status-every %s: want a positive duration, such as 10s", statusEvery)
			case claimIdle <= 0:
				return fmt.Errorf("--claim-idle %s: want a positive duration, such as 30s", claimIdle)
			}
			p, err := a.loadProject()
			if err != nil {
				return err
			}
			streams, err := selectStreams(p, args)
			if err != nil {
				return err
			}
			if p.Redis.Embedded() {
				return fmt.Errorf("larder ingest writes into a Redis server, and the project uses the embedded store, which lives only inside one process: run `larder serve --ingest`, or set redis.addresses (or pass --redis)")
			}
			b, err := a.openStore(ctx, p)
			if err != nil {
				return err
			}
			defer b.Close()
			if err := a.checkEviction(ctx, p, b); err != nil {
				return err
			}
			reg := prometheus.NewRegistry()
			if metricsListen != "" {
				e, err := a.serveMetrics(metricsListen, reg)
				if err != nil {
					return err
				}
				defer e.close()
				fmt.Fprintf(a.stderr, "metrics at http://%s/metrics\n", e.addr)
			}
			ing, err := a.startIngest(ctx, b, streams, reg, ingestSettings{name: name, claimIdle: claimIdle})
			if err != nil {
				return err
			}
			tick := time.NewTicker(statusEvery)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					ing.wait()
					ing.printStatus(context.WithoutCancel(ctx))
					fmt.Fprintln(a.stderr, "stopped")
					return nil
				case <-ing.done:
					// Every consumer stopped on an error of its own (brokers
					// that refuse the stream's password): ending with it lets
					// a supervisor restart the process and alert, where
					// running on with nothing to do would look healthy.
					return ing.stoppedErr()
				case <-tick.C:
					ing.printStatus(ctx)
				}
			}
		},
	}
	cmd.Flags().StringVar(&metricsListen, "metrics-listen", "", "address of a Prometheus /metrics endpoint, such as 127.0.0.1:9467 (default: none)")
	cmd.Flags().StringVar(&name, "name", "", "this consumer's name in the streams' consumer groups (default: host:pid)")
	cmd.Flags().DurationVar(&statusEvery, "status-every", 10*time.Second, "how often to print what was applied and the lag")
	cmd.Flags().DurationVar(&claimIdle, "claim-idle", 30*time.Second, "how long an entry delivered to another consumer stays unacknowledged before this one takes it over")
	return cmd
}

// selectStreams returns the streams named, or every stream of p when none
// is.
func selectStreams(p *larder.Project, names []string) ([]*larder.Stream, error) {
	if len(p.Streams) == 0 {
		return nil, fmt.Errorf("the project declares no streams: add a streams: entry to larder.yaml (see docs/configuration.md, Streams)")
	}
	return selectNamed(p.Streams, names, "stream", func(s *larder.Stream) string { return s.Name })
}

// clearPassword returns a warning when stream s sends its password in
// clear text (SASL PLAIN without TLS), and "" otherwise. Some clusters
// take that on a private network, so it is not refused.
func clearPassword(s *larder.Stream) string {
	k := s.Kafka
	if k == nil || k.TLS != nil || k.SASL == nil || k.SASL.Mechanism != larder.SASLPlain {
		return ""
	}
	return fmt.Sprintf("stream %s sends its Kafka password in clear text (SASL PLAIN without TLS) to %s: add kafka.tls, or use SCRAM-SHA-512",
		s.Name, strings.Join(k.Brokers, ", "))
}

// ingestSettings configure startIngest.
type ingestSettings struct {
	name      string        // the consumer's name; "" means the store's owner
	claimIdle time.Duration // 0 means the consumer's default
}

// ingesting is the stream consumers of one process.
type ingesting struct {
	a         *app
	b         *backend
	consumers []*streamConsumer
	started   time.Time
	wg        sync.WaitGroup
	done      chan struct{} // closed once every consumer has stopped
}

// streamConsumer is the consumer of one stream, of either transport.
type streamConsumer struct {
	Stream *larder.Stream
	run    func(context.Context) error
	counts func() ingest.Counts
	lag    func(context.Context, time.Time) (ingest.Lag, error)

	mu      sync.Mutex
	stopped error // why the consumer stopped before its context ended
}

// stop records why the consumer stopped.
func (c *streamConsumer) stop(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopped = err
}

// stoppedBy returns why the consumer stopped before its context ended;
// nil while it runs.
func (c *streamConsumer) stoppedBy() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stopped
}

// Counts returns what the consumer has done so far.
func (c *streamConsumer) Counts() ingest.Counts { return c.counts() }

// startIngest starts one consumer per stream, each until ctx ends, and
// registers the ingest metrics with reg (when not nil).
func (a *app) startIngest(ctx context.Context, b *backend, streams []*larder.Stream, reg prometheus.Registerer, set ingestSettings) (*ingesting, error) {
	name := set.name
	if name == "" {
		name = b.store.Owner()
	}
	events := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "larder_ingest_events_total",
		Help: "Stream events this process applied, by stream and result: written, older (the stored row was newer) or dead (sent to the dead-letter stream).",
	}, []string{"stream", "result"})
	ing := &ingesting{a: a, b: b, started: a.now(), done: make(chan struct{})}
	// A TLS file that cannot be read stops the start, rather than one
	// consumer later.
	for _, s := range streams {
		if s.Transport() != "kafka" {
			continue
		}
		if _, err := ingest.KafkaOptions(s); err != nil {
			return nil, fmt.Errorf("%s: %w", a.configPath, err)
		}
		if w := clearPassword(s); w != "" {
			fmt.Fprintf(a.stderr, "warning: %s\n", w)
		}
	}
	for _, s := range streams {
		written, older, dead := events.WithLabelValues(s.Name, "written"), events.WithLabelValues(s.Name, "older"), events.WithLabelValues(s.Name, "dead")
		applied := func(n ingest.Counts) {
			written.Add(float64(n.Written))
			older.Add(float64(n.Older))
			dead.Add(float64(n.Dead))
		}
		if s.Transport() == "kafka" {
			c := &ingest.KafkaConsumer{Client: b.client, Stream: s, Store: b.store, Logger: a.logger, Applied: applied}
			ing.consumers = append(ing.consumers, &streamConsumer{Stream: s, run: c.Run, counts: c.Counts,
				lag: func(ctx context.Context, now time.Time) (ingest.Lag, error) { return ingest.KafkaLag(ctx, s, now) }})
			continue
		}
		c := &ingest.RedisConsumer{
			Client: b.client, Stream: s, Store: b.store, Name: name, Logger: a.logger, ClaimIdle: set.claimIdle, Applied: applied,
		}
		ing.consumers = append(ing.consumers, &streamConsumer{Stream: s, run: c.Run, counts: c.Counts,
			lag: func(ctx context.Context, now time.Time) (ingest.Lag, error) {
				return ingest.RedisLag(ctx, b.client, s, now)
			}})
	}
	if reg != nil {
		if err := reg.Register(events); err != nil {
			return nil, err
		}
		if err := reg.Register(&lagCollector{ing: ing}); err != nil {
			return nil, err
		}
	}
	for _, c := range ing.consumers {
		fmt.Fprintf(a.stderr, "ingesting %s into view %s (group %s, consumer %s)\n", c.Stream.Source(), c.Stream.View, c.Stream.Group, name)
		ing.wg.Go(func() {
			if err := c.run(ctx); ctx.Err() == nil {
				if err == nil {
					err = fmt.Errorf("stream %s: its consumer ended", c.Stream.Name)
				}
				c.stop(err)
				a.logger.Error("ingesting a stream stopped", "stream", c.Stream.Name, "err", err)
			}
		})
	}
	go func() {
		ing.wg.Wait()
		close(ing.done)
	}()
	return ing, nil
}

// wait returns once every consumer has stopped.
func (ing *ingesting) wait() { ing.wg.Wait() }

// stoppedErr returns the error of a process whose consumers have all
// stopped, with the reason of each.
func (ing *ingesting) stoppedErr() error {
	var errs []error
	for _, c := range ing.consumers {
		if err := c.stoppedBy(); err != nil {
			errs = append(errs, err)
		}
	}
	return fmt.Errorf("every stream stopped, nothing is left to ingest:\n%w", errors.Join(errs...))
}

// printStatus prints, for each stream, what was applied and the lag, or
// why its consumer stopped.
func (ing *ingesting) printStatus(ctx context.Context) {
	for _, c := range ing.consumers {
		if err := c.stoppedBy(); err != nil {
			fmt.Fprintf(ing.a.stderr, "%s: stopped: %v\n", c.Stream.Name, err)
			continue
		}
		n := c.Counts()
		lagText := "lag unknown"
		lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if lag, err := c.lag(lctx, ing.a.now()); err == nil {
			lagText = fmt.Sprintf("lag %d entries (%.1fs), %d pending", lag.Entries, lag.Seconds, lag.Pending)
		}
		cancel()
		fmt.Fprintf(ing.a.stderr, "%s: %d written, %d older, %d dead; %s\n", c.Stream.Name, n.Written, n.Older, n.Dead, lagText)
	}
}

// lagCollector exports each stream's lag, read from Redis at each scrape.
type lagCollector struct{ ing *ingesting }

var (
	lagEntriesDesc = prometheus.NewDesc("larder_ingest_lag_entries", "Entries of the stream not yet delivered to its consumer group, by stream.", []string{"stream"}, nil)
	lagSecondsDesc = prometheus.NewDesc("larder_ingest_lag_seconds", "Age of the oldest entry of the stream not yet delivered to its consumer group, by stream; 0 when the group is up to date.", []string{"stream"}, nil)
	pendingDesc    = prometheus.NewDesc("larder_ingest_pending_entries", "Entries delivered to a consumer of the group and not yet acknowledged, by stream.", []string{"stream"}, nil)
	stoppedDesc    = prometheus.NewDesc("larder_ingest_stopped", "1 when this process's consumer of the stream stopped on an error that retrying cannot mend (its log says which), 0 while it runs; by stream.", []string{"stream"}, nil)
)

func (c *lagCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- lagEntriesDesc
	ch <- lagSecondsDesc
	ch <- pendingDesc
	ch <- stoppedDesc
}

func (c *lagCollector) Collect(ch chan<- prometheus.Metric) {
	for _, cons := range c.ing.consumers {
		stopped := 0.0
		if cons.stoppedBy() != nil {
			stopped = 1
		}
		ch <- prometheus.MustNewConstMetric(stoppedDesc, prometheus.GaugeValue, stopped, cons.Stream.Name)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		lag, err := cons.lag(ctx, c.ing.a.now())
		cancel()
		if err != nil {
			continue
		}
		ch <- prometheus.MustNewConstMetric(lagEntriesDesc, prometheus.GaugeValue, float64(lag.Entries), cons.Stream.Name)
		ch <- prometheus.MustNewConstMetric(lagSecondsDesc, prometheus.GaugeValue, lag.Seconds, cons.Stream.Name)
		ch <- prometheus.MustNewConstMetric(pendingDesc, prometheus.GaugeValue, float64(lag.Pending), cons.Stream.Name)
	}
}
