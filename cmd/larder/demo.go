package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/client"
	"github.com/larder-dev/larder/config"
	"github.com/larder-dev/larder/demo"
	"github.com/larder-dev/larder/materializer"
	"github.com/larder-dev/larder/models"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
)

type demoOptions struct {
	dir         string
	users       int
	items       int
	events      int
	seed        int64
	keepServing bool
	listen      string
	http        string
	force       bool
}

// check refuses sizes the demo cannot generate, naming the flag.
func (o demoOptions) check() error {
	for _, f := range []struct {
		flag, what string
		n, def     int
	}{
		{"--users", "users", o.users, demo.DefaultUsers},
		{"--items", "items", o.items, demo.DefaultItems},
		{"--events", "events", o.events, demo.DefaultEvents},
	} {
		if f.n < 1 {
			return fmt.Errorf("%s %d: want 1 or more %s; leave %s out for the default, %d", f.flag, f.n, f.what, f.flag, f.def)
		}
	}
	return nil
}

func (a *app) demoCommand() *cobra.Command {
	var o demoOptions
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the whole hybrid path on a synthetic shop, with no Redis (ONNX Runtime is fetched with npm once)",
		Long: `demo generates a synthetic e-commerce data set (users, items and about one
million interaction events) as Parquet, writes its larder.yaml, trains the
re-rank model and exports it as ONNX, materializes every view into the
embedded store, starts the gRPC server on a free port, and calls GetFeatures
and Rank through a real gRPC client, printing the results and the latencies.

Run again, it replaces the files it wrote. A larder.yaml in --dir that the
demo did not write, or that was edited since, is kept: the demo stops
unless --force. The demo runs on an embedded Redis of its own: it takes no
--redis. It needs the ONNX Runtime library, to train and rank: when
"larder setup" has not fetched it yet, the demo fetches it first, which
takes npm (or set ONNXRUNTIME_LIB to a copy you have).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if a.redisAddr != "" {
				return fmt.Errorf("--redis: the demo runs on an embedded Redis of its own, and writes to no other: leave --redis out "+
					"(to load the demo's data into your Redis, run larder --redis ADDR -c %s materialize after the demo)", filepath.Join(o.dir, demo.ProjectFile))
			}
			if err := o.check(); err != nil {
				return err
			}
			return a.runDemo(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.dir, "dir", filepath.Join(".work", "demo"), "folder for the data set, larder.yaml and the model")
	f.IntVar(&o.users, "users", demo.DefaultUsers, "number of users")
	f.IntVar(&o.items, "items", demo.DefaultItems, "number of items")
	f.IntVar(&o.events, "events", demo.DefaultEvents, "number of interaction events")
	f.Int64Var(&o.seed, "seed", 1, "seed of the data set")
	f.BoolVar(&o.keepServing, "keep-serving", false, "leave the server up after the demo, running the views on their schedules, until interrupted")
	f.StringVar(&o.listen, "listen", "127.0.0.1:0", "address for the demo server")
	f.StringVar(&o.http, "http", "", "also serve the HTTP/JSON gateway on this address, such as 127.0.0.1:8080 (POST /v1/features, /v1/rank, /v1/views, /v1/push), for curl")
	f.BoolVar(&o.force, "force", false, "replace the project file in --dir even when it was edited since the demo wrote it")
	return cmd
}

func (a *app) runDemo(ctx context.Context, o demoOptions) error {
	out := a.stdout
	start := time.Now()
	step := func(n int, format string, args ...any) {
		fmt.Fprintf(out, "\n[%d/6] %s\n", n, fmt.Sprintf(format, args...))
	}
	// Whatever would stop the demo later stops it before it writes.
	lis, err := a.listen(listenAddr{addr: o.listen, flag: "--listen", fromFlag: true, example: "127.0.0.1:0 (any free port)"})
	if err != nil {
		return err
	}
	ls := &listeners{grpc: lis}
	defer ls.close()
	if o.http != "" {
		if ls.http, err = a.listen(listenAddr{addr: o.http, flag: "--http", fromFlag: true, example: "127.0.0.1:8080"}); err != nil {
			return err
		}
	}
	if err := checkDemoProject(o.dir, o.force); err != nil {
		return err
	}

	step(1, "Generating a synthetic shop in %s", o.dir)
	gen := newCounter(a.stderr, "generating rows")
	ds, err := demo.Generate(ctx, o.dir, demo.Options{
		Users: o.users, Items: o.items, Events: o.events, Seed: o.seed, Now: a.now(), Progress: gen.update,
	})
	gen.done()
	if err != nil {
		return err
	}
	if err := stampDemoProject(o.dir); err != nil {
		return err
	}
	fmt.Fprintf(out, "      %d users (%d profile rows), %d items (%d rows), %d events, in %.1fs\n",
		ds.Users, ds.UserRows, ds.Items, ds.ItemRows, ds.Events, time.Since(start).Seconds())

	step(2, "Training the re-rank model (%s)", demo.RankerName)
	lib, err := models.EnsureLibrary(ctx, a.stderr)
	if err != nil {
		return err
	}
	if err := a.trainDemoModels(ctx, ds, o.dir); err != nil {
		return err
	}

	step(3, "Loading %s", filepath.Join(o.dir, demo.ProjectFile))
	a.configPath = filepath.Join(o.dir, demo.ProjectFile)
	p, err := config.Load(a.configPath)
	if err != nil {
		return err
	}
	p.Redis.Addrs = nil // the demo always runs on the embedded store
	fmt.Fprintf(out, "      project %s: %d entities, %d sources, %d views, %d ranker(s)\n",
		p.Name, len(p.Entities), len(p.Sources), len(p.Views), len(p.Rankers))

	step(4, "Materializing every view into the embedded store")
	b, err := a.openStore(ctx, p)
	if err != nil {
		return err
	}
	defer b.Close()
	if _, err := a.materialize(ctx, p, b, p.Views, larder.TriggerStartup); err != nil {
		return err
	}

	step(5, "Serving")
	srv, err := a.startServerWith(ctx, p, b, serveOptions{addr: o.listen, http: o.http, listeners: *ls})
	if err != nil {
		return err
	}
	defer srv.close()
	fmt.Fprintf(out, "      gRPC on %s (ONNX Runtime from %s)\n", srv.addr, lib)
	serveCtx, stopServing := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- srv.wait(serveCtx, 5*time.Second) }()
	stop := func() error {
		stopServing()
		return <-served
	}

	step(6, "Calling the server through a gRPC client")
	if err := a.demoCalls(ctx, srv.addr, ds); err != nil {
		_ = stop()
		return err
	}
	fmt.Fprintf(out, "\nDone in %.1fs.\n", time.Since(start).Seconds())

	if !o.keepServing {
		fmt.Fprint(out, a.hint(fmt.Sprintf(`
Next:
  larder demo --keep-serving              # leave this server up, then in another shell:
  grpcurl -plaintext ADDR list            # reflection: the API needs no .proto files
  (no grpcurl? larder demo --keep-serving --http 127.0.0.1:8080 serves HTTP/JSON for curl too)
  larder --redis REDIS_ADDR -c %s views
  larder --redis REDIS_ADDR -c %s get user_profile %d
  larder --redis REDIS_ADDR -c %s keys --view item_profile --limit 5
  larder -c %s rank --addr ADDR home_feed %d --request hour_of_day=20 --explain
  larder -c %s validate
(--keep-serving prints ADDR and REDIS_ADDR.) The project file is %s; the README has a tour.
`, a.configPath, a.configPath, ds.SampleUsers(1)[0], a.configPath, a.configPath, ds.SampleUsers(1)[0], a.configPath, a.configPath)))
		return stop()
	}
	// Kept serving, the views run on their schedules, as `larder serve
	// --schedule` runs them: their generations advance.
	ops, err := newOpsMetrics(nil)
	if err != nil {
		_ = stop()
		return err
	}
	sc, err := a.startScheduling(serveCtx, p, b, ops)
	if err != nil {
		_ = stop()
		return err
	}
	defer sc.wait()
	// The streams of the project are applied as they come, and a trickle
	// of events goes into the Redis stream of the first one, which the
	// demo's streams all read.
	var trickleUser int64
	if len(p.Streams) > 0 {
		ing, err := a.startIngest(serveCtx, b, p.Streams, nil, ingestSettings{name: "demo"})
		if err != nil {
			_ = stop()
			return err
		}
		defer ing.wait()
		trickleUser = ds.SampleUsers(1)[0]
		go a.trickle(serveCtx, b, p.Streams[0].RedisStream, ds, trickleUser, trickleCap)
	}
	u := ds.SampleUsers(1)[0]
	fmt.Fprint(out, a.hint(fmt.Sprintf(`
Serving until interrupted (Ctrl-C), and running the views on their schedules:
their generations advance (larder views, larder runs). Try, in another shell:
  grpcurl -plaintext %[1]s list
  grpcurl -plaintext -d '{"keys":[{"int64_value":%[3]d}],"features":["user_profile:*"]}' %[1]s larder.v1.FeatureService/GetFeatures
  grpcurl -plaintext -d '{}' %[1]s larder.v1.FeatureService/ListViews
  larder --redis %[2]s -c %[4]s views
  larder --redis %[2]s -c %[4]s runs
  larder --redis %[2]s -c %[4]s get user_profile %[3]d
  larder --redis %[2]s -c %[4]s keys --view item_profile --limit 5
  larder -c %[4]s rank --addr %[1]s home_feed %[3]d --request hour_of_day=20 --explain
`, srv.addr, b.embedded.Addr(), u, a.configPath)))
	if ls.http != nil {
		fmt.Fprint(out, a.hint(fmt.Sprintf(`The same calls over HTTP/JSON (docs/api.md):
  curl -s -X POST http://%[1]s/v1/features -d '{"keys":[{"int64_value":%[2]d}],"features":["user_profile:age","user_profile:country"]}'
  curl -s -X POST http://%[1]s/v1/views -d '{}'
`, ls.http.Addr(), u)))
	}
	if trickleUser != 0 {
		fmt.Fprint(out, a.hint(fmt.Sprintf(`Events stream in too (a few a second, into Redis stream %[3]s): user %[4]d's
last event and activity counts move between runs:
  larder --redis %[1]s -c %[2]s get user_last_event %[4]d
  larder --redis %[1]s -c %[2]s get user_activity %[4]d
`, b.embedded.Addr(), a.configPath, p.Streams[0].RedisStream, trickleUser)))
	}
	<-ctx.Done()
	return stop()
}

// demoStamp is the file, next to the demo's project file, that holds the
// SHA-256 of the project file as the demo last wrote it, so that a later
// demo tells a file the user edited from one an older demo wrote.
const demoStamp = ".larder.yaml.demo-sha256"

// checkDemoProject refuses to let the demo replace the project file in dir
// when the user edited it: when it is neither the demo's project nor the
// file the demo last wrote there. force lets it.
func checkDemoProject(dir string, force bool) error {
	path := filepath.Join(dir, demo.ProjectFile)
	data, err := os.ReadFile(path)
	switch {
	case force || errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("demo: %w", err)
	case bytes.Equal(data, demo.ProjectYAML()):
		return nil
	}
	const what = "to keep it, run the demo in another folder (--dir) or move the file; to replace it with the demo's, pass --force"
	stamp, err := os.ReadFile(filepath.Join(dir, demoStamp))
	switch {
	case err != nil:
		return fmt.Errorf("demo: %s is not the demo's project file: %s", path, what)
	case strings.TrimSpace(string(stamp)) != sha256Hex(data):
		return fmt.Errorf("demo: %s was edited since the demo wrote it: %s", path, what)
	}
	return nil
}

// stampDemoProject records the project file the demo wrote into dir (see
// demoStamp).
func stampDemoProject(dir string) error {
	if err := os.WriteFile(filepath.Join(dir, demoStamp), []byte(sha256Hex(demo.ProjectYAML())+"\n"), 0o644); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	return nil
}

func sha256Hex(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// trickleCap is how many events the demo's trickle keeps in its stream:
// at five a second, the last 2 hours and 46 minutes, far more than its
// consumer ever lags behind.
const trickleCap = 50_000

// trickle adds a synthetic event of the demo's shop to Redis stream key,
// which the demo's streams read, about every 200 ms until ctx ends: every
// fifth one for user, whose last event and activity then move, the others
// for other users. Its fields are named as the columns of the events
// files: user_id, event_time, item_id, event_type, dwell_seconds and, on
// purchases, price_paid. The event type changes every five events, so
// that user's events are of every type. The stream keeps the newest
// maxLen events: larder never trims the streams it reads, and a demo
// left serving would otherwise grow by 432,000 events a day.
func (a *app) trickle(ctx context.Context, b *backend, key string, ds *demo.Dataset, user, maxLen int64) {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	types := []string{"view", "view", "view", "click", "purchase"}
	users, items := ds.SampleUsers(50), ds.SampleItems(50)
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		u := user
		if i%5 != 0 {
			u = users[i%len(users)]
		}
		typ := types[i/5%len(types)]
		vals := []any{
			"user_id", u, "event_time", a.now().UnixMilli(), "item_id", items[(i*7)%len(items)],
			"event_type", typ, "dwell_seconds", fmt.Sprintf("%.1f", float64(5+i%40)),
		}
		if typ == "purchase" {
			vals = append(vals, "price_paid", fmt.Sprintf("%.2f", float64(10+i%90)))
		}
		err := b.client.XAdd(ctx, &redis.XAddArgs{Stream: key, MaxLen: maxLen, Values: vals}).Err()
		if err != nil && ctx.Err() == nil {
			a.logger.Warn("the demo's event trickle", "err", err)
		}
	}
}

// trainDemoModels trains the demo project's two models and writes them
// where its larder.yaml expects them, under dir/models.
func (a *app) trainDemoModels(ctx context.Context, ds *demo.Dataset, dir string) error {
	if err := a.trainDemoModel(ctx, ds, dir, filepath.Join(dir, "models", "rerank.onnx")); err != nil {
		return err
	}
	return a.trainItemPrior(ds, filepath.Join(dir, "models", "item_prior.onnx"))
}

// demoImpressions is the number of impressions of the demo's training
// spine: the re-rank model trains on the first demoTrainRows and is tested
// on the rest.
const (
	demoImpressions = 80_000
	demoTrainRows   = 60_000
)

// trainDemoModel trains the demo's re-rank MLP and writes it as ONNX. Its
// training set is exported the way a user's would be: impressions with
// their labels as the spine, and larder export adding the ranker's model
// input as of each impression's instant, built as Rank builds it.
func (a *app) trainDemoModel(ctx context.Context, ds *demo.Dataset, dir, path string) error {
	start := time.Now()
	// The export reads relative paths from the project's folder, dir.
	spine, train := demo.ImpressionsFile, filepath.Join("data", "training.parquet")
	if err := ds.WriteImpressions(ctx, filepath.Join(dir, spine), demoImpressions, ds.Seed+7); err != nil {
		return fmt.Errorf("write the demo's impressions: %w", err)
	}
	p, err := config.Load(filepath.Join(dir, demo.ProjectFile))
	if err != nil {
		return err
	}
	m := materializer.New(p, nil, materializer.Options{Logger: a.logger, Now: a.now})
	rep, err := m.Export(ctx, materializer.ExportArgs{Spine: spine, Output: train, Timestamp: demo.ImpressionTime, Ranker: demo.RankerName})
	if err != nil {
		return fmt.Errorf("export the demo's training set: %w", err)
	}
	fmt.Fprintf(a.stdout, "      larder export: %d impressions with the inputs of %s as of their instants, %.1fs (%.0f rows/s), into %s\n",
		rep.SpineRows, demo.RankerName, rep.Duration.Seconds(), rep.RowsPerSecond, filepath.Join(dir, train))
	cols := make([]string, len(ds.RankerInputs()))
	for i, in := range ds.RankerInputs() {
		cols[i] = materializer.InputColumn(demo.RankerName, in)
	}
	x, y, err := demo.ReadTrainingSet(filepath.Join(dir, train), cols, demo.ImpressionLabel)
	if err != nil {
		return err
	}
	features, rows := len(ds.RankerInputs()), len(y)
	trainRows := min(demoTrainRows, rows)
	testRows := rows - trainRows
	trainX, trainY := x[:trainRows*features], y[:trainRows]
	testX, testY := x[trainRows*features:], y[trainRows:]
	net, err := models.Train(trainX, trainY, features, models.TrainConfig{Hidden: 16, Epochs: 8, BatchSize: 64, LearningRate: 0.005, Seed: uint64(ds.Seed)})
	if err != nil {
		return fmt.Errorf("train the demo model: %w", err)
	}
	scores := make([]float32, testRows)
	net.Forward(testX, testRows, scores)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := net.WriteONNX(f, larder.DefaultModelInput, larder.DefaultModelOutput); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "      MLP %d -> %d -> 1 trained on %d impressions in %.1fs; held-out AUC %.3f; written to %s\n",
		features, net.Hidden()[0], trainRows, time.Since(start).Seconds(), auc(scores, testY), path)
	return nil
}

// itemPriorInputs are the inputs of the demo's item_click_prior prediction
// view, in the order of its larder.yaml.
var itemPriorInputs = []string{"item_profile:category_id", "item_profile:price", "item_profile:discount",
	"item_profile:rating", "item_profile:popularity_7d", "item_profile:ctr_7d"}

// trainItemPrior trains the logistic regression behind the item_click_prior
// prediction view: the chance of a click from the item's features alone.
func (a *app) trainItemPrior(ds *demo.Dataset, path string) error {
	const rows = 40_000
	start := time.Now()
	x, y, features, names := ds.TrainingSet(rows, ds.Seed+11)
	cols := make([]int, len(itemPriorInputs))
	for i, in := range itemPriorInputs {
		if cols[i] = slices.Index(names, in); cols[i] < 0 {
			return fmt.Errorf("demo: the training set has no column %s", in)
		}
	}
	sub := make([]float32, 0, rows*len(cols))
	for r := 0; r < rows; r++ {
		for _, c := range cols {
			sub = append(sub, x[r*features+c])
		}
	}
	net, err := models.Train(sub, y, len(cols), models.TrainConfig{Epochs: 5, BatchSize: 128, LearningRate: 0.01, Seed: uint64(ds.Seed)})
	if err != nil {
		return fmt.Errorf("train the item prior model: %w", err)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := net.WriteONNX(f, larder.DefaultModelInput, larder.DefaultModelOutput); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "      logistic regression over %d item features (item_click_prior) trained in %.1fs; written to %s\n",
		len(cols), time.Since(start).Seconds(), path)
	return nil
}

// auc is the area under the ROC curve: the chance that a random positive
// scores above a random negative.
func auc(scores, labels []float32) float64 {
	idx := make([]int, len(scores))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int {
		switch {
		case scores[a] < scores[b]:
			return -1
		case scores[a] > scores[b]:
			return 1
		}
		return 0
	})
	var pos, neg, rankSum float64
	for r, i := range idx {
		if labels[i] > 0.5 {
			pos++
			rankSum += float64(r + 1)
		} else {
			neg++
		}
	}
	if pos == 0 || neg == 0 {
		return math.NaN()
	}
	return (rankSum - pos*(pos+1)/2) / (pos * neg)
}

// demoCalls shows GetFeatures and Rank through larder's Go client (the
// client package), then measures their latencies.
func (a *app) demoCalls(ctx context.Context, addr string, ds *demo.Dataset) error {
	out := a.stdout
	c, err := client.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()

	users := ds.SampleUsers(3)
	keys := make([]*larderv1.EntityKey, len(users))
	for i, u := range users {
		keys[i] = client.Int64Key(u)
	}
	feats := []string{"user_profile:age", "user_profile:country", "user_profile:ctr_7d", "user_last_event:last_event_type",
		"user_activity:dwell_count_7d", "user_activity:dwell_mean_7d", "user_activity:spend_sum_30d", "user_items:items_count_distinct_30d"}
	gf, err := c.GetFeatures(ctx, keys, feats...)
	if err != nil {
		return fmt.Errorf("GetFeatures: %w", err)
	}
	names := make([]string, gf.Columns())
	for col := range names {
		names[col] = gf.Name(col)
	}
	fmt.Fprintf(out, "\n      GetFeatures(%d users × %d features) → generations %s\n", len(users), gf.Columns(), generations(gf.Response().GetGenerations()))
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "      user_id\t%s\n", strings.Join(names, "\t"))
	for i := range gf.Rows() {
		cells := []string{fmt.Sprint(users[i])}
		for col := range gf.Columns() {
			cells = append(cells, formatProtoValue(gf, col, i))
		}
		fmt.Fprintf(tw, "      %s\n", strings.Join(cells, "\t"))
	}
	tw.Flush()

	user := users[0]
	cands := ds.SampleItems(100)
	candKeys := make([]*larderv1.EntityKey, len(cands))
	for i, c := range cands {
		candKeys[i] = client.Int64Key(c)
	}
	// The hour of the demo's day (it ends at the hour the data set ends,
	// whatever the wall clock says), as the model was trained on.
	hour := ds.HourOf(a.now())
	rankReq := &larderv1.RankRequest{
		Ranker: demo.RankerName, ContextKey: client.Int64Key(user), CandidateKeys: candKeys, TopK: 10,
		RequestFeatures: map[string]*larderv1.Value{"hour_of_day": {Kind: &larderv1.Value_Int64Value{Int64Value: int64(hour)}}},
	}
	rk, err := c.Rank(ctx, rankReq)
	if err != nil {
		return fmt.Errorf("call Rank: %w", err)
	}
	top := make([]*larderv1.EntityKey, len(rk.GetCandidates()))
	for i, c := range rk.GetCandidates() {
		top[i] = c.GetKey()
	}
	info, err := c.GetFeatures(ctx, top, "item_profile:category", "item_profile:price", "item_profile:rating")
	if err != nil {
		return fmt.Errorf("GetFeatures: %w", err)
	}
	fmt.Fprintf(out, "\n      Rank(%s, user %d, %d candidates, hour %d) → top %d, model %s\n",
		demo.RankerName, user, len(cands), hour, len(rk.GetCandidates()), rk.GetModelVersion())
	tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "      #\titem_id\tscore\tcategory\tprice\trating\ttrue click probability")
	for i, c := range rk.GetCandidates() {
		truth, _ := ds.ClickProbability(user, c.GetKey().GetInt64Value(), hour)
		fmt.Fprintf(tw, "      %d\t%d\t%.4f\t%s\t%s\t%s\t%.4f\n", i+1, c.GetKey().GetInt64Value(), c.GetScore(),
			formatProtoValue(info, 0, i), formatProtoValue(info, 1, i), formatProtoValue(info, 2, i), truth)
	}
	tw.Flush()

	// The same ranker with no candidates in the request: it re-ranks the
	// user's precomputed list (the user_recs candidates view).
	stored, err := c.Rank(ctx, &larderv1.RankRequest{
		Ranker: demo.RankerName, ContextKey: client.Int64Key(user), TopK: 5,
		RequestFeatures: rankReq.GetRequestFeatures(),
	})
	if err != nil {
		return fmt.Errorf("call Rank on the stored list: %w", err)
	}
	top = top[:0]
	for _, c := range stored.GetCandidates() {
		top = append(top, c.GetKey())
	}
	prior, err := c.GetFeatures(ctx, top, "item_profile:category", "item_click_prior:p_click")
	if err != nil {
		return fmt.Errorf("GetFeatures: %w", err)
	}
	fmt.Fprintf(out, "\n      Rank(%s, user %d, no candidates: its stored user_recs list) → top %d, generations %s\n",
		demo.RankerName, user, len(stored.GetCandidates()), generations(stored.GetGenerations()))
	tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "      #\titem_id\tscore\tcategory\titem_click_prior:p_click\ttrue click probability")
	for i, c := range stored.GetCandidates() {
		truth, _ := ds.ClickProbability(user, c.GetKey().GetInt64Value(), hour)
		fmt.Fprintf(tw, "      %d\t%d\t%.4f\t%s\t%s\t%.4f\n", i+1, c.GetKey().GetInt64Value(), c.GetScore(),
			formatProtoValue(prior, 0, i), formatProtoValue(prior, 1, i), truth)
	}
	tw.Flush()

	fmt.Fprintln(out, "\n      Latency through the gRPC client, one call at a time:")
	rng := rand.New(rand.NewPCG(uint64(ds.Seed), 99))
	allUsers := ds.SampleUsers(ds.Users)
	gfLat, err := measure(ctx, 1000, func() error {
		_, err := c.GetFeatures(ctx, []*larderv1.EntityKey{client.Int64Key(allUsers[rng.IntN(len(allUsers))])}, "user_profile:*")
		return err
	})
	if err != nil {
		return fmt.Errorf("GetFeatures: %w", err)
	}
	rkLat, err := measure(ctx, 500, func() error {
		rankReq.ContextKey = client.Int64Key(allUsers[rng.IntN(len(allUsers))])
		_, err := c.Rank(ctx, rankReq)
		return err
	})
	if err != nil {
		return fmt.Errorf("call Rank: %w", err)
	}
	tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "      call\tcalls\tp50\tp90\tp99")
	fmt.Fprintf(tw, "      GetFeatures (1 user, user_profile:*)\t%d\t%s\t%s\t%s\n", len(gfLat), pct(gfLat, 50), pct(gfLat, 90), pct(gfLat, 99))
	fmt.Fprintf(tw, "      Rank (1 user + %d items, %d inputs)\t%d\t%s\t%s\t%s\n", len(cands), len(ds.RankerInputs()), len(rkLat), pct(rkLat, 50), pct(rkLat, 90), pct(rkLat, 99))
	tw.Flush()
	fmt.Fprintln(out, "      (client, server and the embedded store share this machine's cores)")
	return nil
}

func measure(ctx context.Context, n int, call func() error) ([]time.Duration, error) {
	for range n / 10 { // warm up connections, caches and the model
		if err := call(); err != nil {
			return nil, err
		}
	}
	lat := make([]time.Duration, 0, n)
	for range n {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		t := time.Now()
		if err := call(); err != nil {
			return nil, err
		}
		lat = append(lat, time.Since(t))
	}
	slices.Sort(lat)
	return lat, nil
}

func pct(sorted []time.Duration, p int) string {
	i := (len(sorted)*p + 99) / 100
	i = min(max(i-1, 0), len(sorted)-1)
	return fmt.Sprintf("%.0fµs", float64(sorted[i].Microseconds()))
}

func generations(gs []*larderv1.ViewGeneration) string {
	parts := make([]string, len(gs))
	for i, g := range gs {
		parts[i] = fmt.Sprintf("%s@%d", g.GetView(), g.GetGeneration())
	}
	return strings.Join(parts, ", ")
}

// formatProtoValue prints a returned value for people, marking stale and
// missing ones.
func formatProtoValue(f *client.Features, col, row int) string {
	status := f.Status(col, row)
	if status == larderv1.FeatureStatus_FEATURE_STATUS_NOT_FOUND {
		return "(not found)"
	}
	var s string
	switch k := f.Value(col, row).GetKind().(type) {
	case *larderv1.Value_Int64Value:
		s = fmt.Sprint(k.Int64Value)
	case *larderv1.Value_Float64Value:
		s = fmt.Sprintf("%.4g", k.Float64Value)
	case *larderv1.Value_Float32Value:
		s = fmt.Sprintf("%.4g", k.Float32Value)
	case *larderv1.Value_BoolValue:
		s = fmt.Sprint(k.BoolValue)
	case *larderv1.Value_StringValue:
		s = k.StringValue
	case *larderv1.Value_BytesValue:
		s = fmt.Sprintf("0x%x", k.BytesValue)
	case *larderv1.Value_Float32VectorValue:
		s = fmt.Sprint(k.Float32VectorValue.GetValues())
	default:
		s = "null"
	}
	if status == larderv1.FeatureStatus_FEATURE_STATUS_STALE {
		s += " (stale)"
	}
	return s
}

// counter reports the progress of work whose total is known, on a terminal
// as a bar and elsewhere as a line per tenth.
type counter struct {
	p *progress
}

func newCounter(w interface{ Write([]byte) (int, error) }, what string) *counter {
	return &counter{p: newProgress(w, what)}
}

func (c *counter) update(done, total int64) {
	c.p.update(materializerProgress(done, total))
}

func (c *counter) done() { c.p.done() }
