package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/config"
	"github.com/larder-dev/larder/demo"
	"github.com/larder-dev/larder/models"
	"github.com/larder-dev/larder/queue"
	"github.com/larder-dev/larder/redistest"
	"github.com/larder-dev/larder/store"
)

// scoreJobBatch is the batch size of BenchmarkScoreJob1M's jobs and floors:
// the default.
const scoreJobBatch = larder.DefaultPredictionBatch

// BenchmarkScoreJob1M scores 1M rows with the demo's ranker home_feed (11
// inputs from user_profile and item_profile and the request's hour_of_day,
// the demo's trained 12→16→1 MLP) from the command line, on the demo shop
// of 10,000 users and 2,000 items in a real redis-server: each user's 50
// candidates of the demo's recall lists (data/candidates.parquet), each at
// two hours of the day, a user's rows after each other. In the same run:
//
//	direct      larder score --ranker home_feed, in this process; it
//	            reports the progress lines it printed per run
//	queued      larder score --async --wait, run by a worker in this process
//	            (the handler of larder worker), followed to its end; it
//	            reports the rows/s of the whole command (which polls the job
//	            every 0.5 s) and of the job alone (its started and finished
//	            times), and the progress lines --wait printed per run
//	read-floor  the store reads alone of the same batches' keys (each
//	            batch's distinct users and its items, the ranker's features
//	            as numbers), one round trip at a time
//	ort-floor   ONNX Runtime alone on the same rows' model inputs, in the
//	            same batches
//
// Then it checks that the two outputs hold the same rows, row by row, score
// bits included. It takes about 10 s:
//
//	go test ./cmd/larder -run '^$' -bench ScoreJob1M -v
func BenchmarkScoreJob1M(b *testing.B) {
	ctx := b.Context()
	dir := b.TempDir()
	start := time.Now()
	ds, err := demo.Generate(ctx, dir, demo.Options{Events: 100_000, Seed: 1, Now: start.Add(-time.Hour)})
	if err != nil {
		b.Fatal(err)
	}
	quiet := &app{stdout: io.Discard, stderr: io.Discard, now: time.Now, logger: slog.New(slog.DiscardHandler)}
	if err := quiet.trainDemoModels(ctx, ds, dir); err != nil {
		b.Fatal(err)
	}
	cfg := filepath.Join(dir, demo.ProjectFile)
	srv := redistest.Start(b)
	mustSucceed(b, larderAt(b, ctx, start, "--redis", srv.Addr, "-c", cfg, "materialize", "user_profile", "item_profile"), "materialize")
	asOf := start.UTC().Truncate(time.Second).Format(time.RFC3339)

	in := scoreJobInput(b, filepath.Join(dir, "data", "candidates.parquet"))
	if len(in) != 1_000_000 {
		b.Fatalf("%d input rows, want 1M: 10,000 users × 50 candidates × 2 hours", len(in))
	}
	input := filepath.Join(dir, "in.parquet")
	writeParquet(b, input, in)
	rows := float64(len(in))
	b.Logf("set-up: demo shop, materialized views and %d input rows in %s", len(in), time.Since(start).Round(time.Millisecond))
	score := func(out string, extra ...string) result {
		args := append([]string{"--redis", srv.Addr, "-c", cfg, "score", "--ranker", "home_feed",
			"--input", input, "--output", out, "--as-of", asOf}, extra...)
		// The clock runs, as in a process of its own: the summary's
		// duration and rows/s are measured.
		var stdout, stderr bytes.Buffer
		a := &app{stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr, now: time.Now}
		code := a.run(ctx, args)
		return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
	}

	direct := filepath.Join(dir, "direct.parquet")
	b.Run("direct", func(b *testing.B) {
		var progress int
		var r result
		for b.Loop() {
			r = score(direct)
			mustSucceed(b, r, "score")
			progress += strings.Count(r.stderr, "home_feed: scoring ")
		}
		b.Logf("larder score printed:\n%s%s", r.stderr, r.stdout)
		b.ReportMetric(rows*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
		b.ReportMetric(float64(progress)/float64(b.N), "progress-lines/op")
	})

	queued := filepath.Join(dir, "queued.parquet")
	b.Run("queued", func(b *testing.B) {
		p := loadProjectAt(b, cfg, srv.Addr)
		a := &app{stdout: io.Discard, stderr: io.Discard, now: time.Now, configPath: cfg, logger: slog.New(slog.DiscardHandler)}
		bk, err := a.openStore(ctx, p)
		if err != nil {
			b.Fatal(err)
		}
		defer bk.Close()
		metrics, err := newOpsMetrics(nil)
		if err != nil {
			b.Fatal(err)
		}
		wctx, stop := context.WithCancel(ctx)
		w := a.startWorkers(wctx, p, bk, metrics, workerSettings{concurrency: 1})
		defer func() { stop(); _ = w.wait() }()
		q := a.newQueue(p, bk, nil)
		var took time.Duration
		var progress int
		var r result
		for b.Loop() {
			r = score(queued, "--async", "--wait")
			mustSucceed(b, r, "score --async --wait")
			j := lastScoreJob(b, q)
			took += j.FinishedAt.Sub(j.StartedAt)
			progress += strings.Count(r.stderr, ": running, scoring ")
		}
		b.ReportMetric(rows*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
		b.ReportMetric(rows*float64(b.N)/took.Seconds(), "job-rows/s")
		b.ReportMetric(float64(progress)/float64(b.N), "progress-lines/op")
		b.Logf("larder score --async --wait printed:\n%s%s", r.stdout, r.stderr)
	})

	p, err := config.Load(cfg)
	if err != nil {
		b.Fatal(err)
	}
	st := store.New(srv.Client(), p.Name, store.Options{})
	r := p.Ranker("home_feed")
	f := newRankFloor(r, in)
	b.Run("read-floor", func(b *testing.B) {
		for b.Loop() {
			for lo := 0; lo < len(in); lo += scoreJobBatch {
				if err := f.read(ctx, st, lo, min(lo+scoreJobBatch, len(in)), nil); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(rows*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	})

	b.Run("ort-floor", func(b *testing.B) {
		lib, err := models.EnsureLibrary(ctx, io.Discard)
		if err != nil {
			b.Fatal(err)
		}
		rt, err := models.NewRuntime(lib)
		if err != nil {
			b.Fatal(err)
		}
		defer rt.Close()
		m, err := rt.Load(p.Path(r.Model), models.Spec{Input: r.ModelInput, Output: r.ModelOutput, Features: len(r.Inputs), Outputs: 1})
		if err != nil {
			b.Fatal(err)
		}
		defer m.Close()
		// The model inputs of every row, read beforehand.
		width := len(r.Inputs)
		x := make([]float32, width*len(in))
		for lo := 0; lo < len(in); lo += scoreJobBatch {
			if err := f.read(ctx, st, lo, min(lo+scoreJobBatch, len(in)), x); err != nil {
				b.Fatal(err)
			}
		}
		y := make([]float32, scoreJobBatch)
		for b.Loop() {
			for lo := 0; lo < len(in); lo += scoreJobBatch {
				n := min(scoreJobBatch, len(in)-lo)
				if err := m.Score(ctx, x[width*lo:width*(lo+n)], n, y); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(rows*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	})

	sameScores(b, direct, queued, len(in))
}

// scoreJobInput returns BenchmarkScoreJob1M's input: every row of the
// candidates file at path, twice, at two hours of the day twelve hours
// apart, a user's rows after each other.
func scoreJobInput(tb testing.TB, path string) []rankInputRow {
	tb.Helper()
	type candidate struct {
		UserID int64 `parquet:"user_id"`
		ItemID int64 `parquet:"item_id"`
	}
	cands, err := parquet.ReadFile[candidate](path)
	if err != nil {
		tb.Fatal(err)
	}
	in := make([]rankInputRow, 0, 2*len(cands))
	for lo := 0; lo < len(cands); {
		hi := lo
		for hi < len(cands) && cands[hi].UserID == cands[lo].UserID {
			hi++
		}
		for _, h := range []int64{cands[lo].UserID % 12, cands[lo].UserID%12 + 12} {
			for _, c := range cands[lo:hi] {
				in = append(in, rankInputRow{UserID: c.UserID, ItemID: c.ItemID, HourOfDay: h})
			}
		}
		lo = hi
	}
	return in
}

// lastScoreJob returns the newest scoring job of q, which must have
// succeeded.
func lastScoreJob(tb testing.TB, q *queue.Queue) larder.Job {
	tb.Helper()
	jobs, err := q.Jobs(context.Background(), larder.JobFilter{Kind: larder.JobScore, Limit: 1})
	if err != nil {
		tb.Fatal(err)
	}
	if len(jobs) != 1 || jobs[0].State != larder.JobSucceeded {
		tb.Fatalf("newest scoring job: %+v, want one that succeeded", jobs)
	}
	return jobs[0]
}

// rankFloor reads the features of a ranker's input rows as a scoring job
// does, without the job: one lookup per view the ranker reads, the
// context views' for a batch's distinct contexts, the candidate views' for
// every row's candidate.
type rankFloor struct {
	in      []rankInputRow
	width   int
	hour    int // the model input column of request:hour_of_day
	lookups []*larder.Lookup
	context []bool  // whether lookups[i] reads context keys
	cols    [][]int // the model input column of each feature lookups[i] reads
}

func newRankFloor(r *larder.Ranker, in []rankInputRow) *rankFloor {
	f := &rankFloor{in: in, width: len(r.Inputs), hour: -1}
	byView := map[*larder.View]int{}
	for j, input := range r.Inputs {
		if input.Side == larder.SideRequest {
			f.hour = j
			continue
		}
		i, ok := byView[input.View]
		if !ok {
			i = len(f.lookups)
			byView[input.View] = i
			f.lookups = append(f.lookups, &larder.Lookup{View: input.View, Numbers: &larder.NumberRead{}})
			f.context = append(f.context, input.Side == larder.SideContext)
			f.cols = append(f.cols, nil)
		}
		n := f.lookups[i].Numbers
		n.Features = append(n.Features, input.Feature)
		n.Defaults = append(n.Defaults, input.Default)
		f.cols[i] = append(f.cols[i], j)
	}
	return f
}

// read reads the features of rows lo to hi in one round trip and, when x is
// not nil, writes their model inputs into x (the whole input's).
func (f *rankFloor) read(ctx context.Context, st *store.Store, lo, hi int, x []float32) error {
	var users, items []larder.Key
	userOf := make([]int, 0, hi-lo)
	for _, row := range f.in[lo:hi] {
		u := larder.Int64Key(row.UserID)
		if n := len(users); n == 0 || users[n-1] != u {
			users = append(users, u)
		}
		userOf = append(userOf, len(users)-1)
		items = append(items, larder.Int64Key(row.ItemID))
	}
	for i, l := range f.lookups {
		l.Keys = items
		if f.context[i] {
			l.Keys = users
		}
	}
	if err := st.Read(ctx, f.lookups); err != nil {
		return err
	}
	if x == nil {
		return nil
	}
	for r := lo; r < hi; r++ {
		xr := x[f.width*r : f.width*(r+1)]
		for i, l := range f.lookups {
			k := r - lo
			if f.context[i] {
				k = userOf[r-lo]
			}
			nf := len(f.cols[i])
			for c, col := range f.cols[i] {
				xr[col] = l.Numbers.Values[k*nf+c]
			}
		}
		if f.hour >= 0 {
			xr[f.hour] = float32(f.in[r].HourOfDay)
		}
	}
	return nil
}

// sameScores checks that the scoring outputs at a and b both hold n rows,
// the same, row by row.
func sameScores(tb testing.TB, a, b string, n int) {
	tb.Helper()
	ra, err := parquet.ReadFile[rankOutputRow](a)
	if err != nil {
		tb.Fatal(err)
	}
	rb, err := parquet.ReadFile[rankOutputRow](b)
	if err != nil {
		tb.Fatal(err)
	}
	if len(ra) != n || len(rb) != n {
		tb.Fatalf("%s holds %d rows and %s %d, want %d each", a, len(ra), b, len(rb), n)
	}
	for i := range ra {
		if ra[i].UserID != rb[i].UserID || ra[i].ItemID != rb[i].ItemID || math.Float32bits(ra[i].Score) != math.Float32bits(rb[i].Score) {
			tb.Fatalf("row %d: %s holds %+v, %s %+v", i, a, ra[i], b, rb[i])
		}
	}
	tb.Logf("%s and %s hold the same %d rows", filepath.Base(a), filepath.Base(b), n)
}
