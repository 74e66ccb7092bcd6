package main

import (
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/larder-dev/larder"
	larderclient "github.com/larder-dev/larder/client"
	"github.com/larder-dev/larder/config"
	"github.com/larder-dev/larder/demo"
	"github.com/larder-dev/larder/internal/parquettest"
	"github.com/larder-dev/larder/materializer"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
	"github.com/larder-dev/larder/redistest"
	"github.com/larder-dev/larder/store"
)

// impressionRow is a row of the skew test's spine.
type impressionRow struct {
	UserID    int64     `parquet:"user_id"`
	ItemID    int64     `parquet:"item_id"`
	At        time.Time `parquet:"at,timestamp(microsecond)"`
	HourOfDay *int64    `parquet:"hour_of_day,optional"`
	Clicked   int64     `parquet:"clicked"`
}

// readRows reads an export's rows: by row, the value of each column by
// name, and the values of each list column (VIEW:FEATURE.list.element) by
// the list column's name.
func readRows(tb testing.TB, path string) ([]map[string]parquet.Value, []map[string][]parquet.Value) {
	tb.Helper()
	pf := parquettest.Open(tb, path)
	var names []string
	for _, c := range pf.Schema().Columns() {
		names = append(names, strings.Join(c, "."))
	}
	r := parquet.NewReader(pf)
	defer r.Close()
	var out []map[string]parquet.Value
	var lists []map[string][]parquet.Value
	rows := make([]parquet.Row, 64)
	for {
		n, err := r.ReadRows(rows)
		for _, row := range rows[:n] {
			m := make(map[string]parquet.Value, len(row))
			l := map[string][]parquet.Value{}
			for _, v := range row {
				name := names[v.Column()]
				if list, ok := strings.CutSuffix(name, ".list.element"); ok {
					l[list] = append(l[list], v.Clone())
					continue
				}
				m[name] = v.Clone()
			}
			out, lists = append(out, m), append(lists, l)
		}
		if errors.Is(err, io.EOF) {
			return out, lists
		}
		if err != nil {
			tb.Fatal(err)
		}
	}
}

// TestExportSkew is the training/serving skew test: the demo's views are
// materialized as of t0 into a real Redis and served by larder serve; a
// spine of impressions at t0 is exported from the same sources. Every
// exported feature equals what the store serves for the entity from that
// run (the values GetFeatures returns, read with the store's Read that
// GetFeatures calls), a stale or missing row is null with its status, and
// every --ranker column equals, bit for bit, the input Rank's explain
// reports for the same context, candidate and request features.
func TestExportSkew(t *testing.T) {
	t.Parallel()
	ds, cfg := demoProject(t)
	redis := redistest.Start(t)
	mustSucceed(t, larderAt(t, t.Context(), t0, "--redis", redis.Addr, "-c", cfg, "materialize"), "materialize")
	srv := startServe(t, "--redis", redis.Addr, "-c", cfg, "serve", "--listen", "127.0.0.1:0")
	dir := filepath.Dir(cfg)

	// Every user, with items the demo has and one it has not, at hours
	// of the day.
	users := ds.SampleUsers(ds.Users)
	items := append(ds.SampleItems(6), 42)
	var spine []impressionRow
	for i, u := range users {
		for j, it := range items {
			if (i+j)%3 != 0 {
				continue
			}
			spine = append(spine, impressionRow{UserID: u, ItemID: it, At: t0, Clicked: int64((i + j) % 2), HourOfDay: ptrTo(int64((i * j) % 24))})
		}
	}
	writeParquet(t, filepath.Join(dir, "spine.parquet"), spine)
	out := filepath.Join(dir, "train.parquet")
	// user_items is the demo's batch-only aggregate view. user_activity is
	// left out: a stream feeds it, so it answers as of the request's time
	// rounded down to its tile, from the files up to their newest event's
	// tile and the stream after it, which this test, with no stream, does
	// not give it (the equivalence of its streamed and batch values is
	// ingest's TestStreamingAggregateEquivalence, and its export at a
	// run's cutoff is checked by TestExportSkewStreaming).
	feats := "user_profile:*,user_last_event:*,user_items:*,item_profile:*,item_click_prior:*,user_recs:*"
	r := larderAt(t, t.Context(), t0, "-c", cfg, "export", "--spine", filepath.Join(dir, "spine.parquet"), "--timestamp", "at",
		"--features", feats, "--ranker", demo.RankerName, "--output", out, "--chunk-rows", "50")
	mustSucceed(t, r, "export")
	if !strings.Contains(r.stdout, fmt.Sprintf("export: %d spine rows written to %s", len(spine), out)) {
		t.Errorf("export printed:\n%s\nwant its summary", r.stdout)
	}
	got, gotLists := readRows(t, out)
	if len(got) != len(spine) {
		t.Fatalf("%d rows exported, want %d", len(got), len(spine))
	}

	project, err := config.Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	st := store.New(redis.Client(), project.Name, store.Options{})
	conn, err := grpc.NewClient(srv.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := larderv1.NewFeatureServiceClient(conn)
	ranker := project.Ranker(demo.RankerName)

	checked, stale, lists := 0, 0, 0
	for i, s := range spine {
		row := got[i]
		if row["user_id"].Int64() != s.UserID || row["item_id"].Int64() != s.ItemID || row["clicked"].Int64() != s.Clicked {
			t.Fatalf("row %d: spine columns %v, want %+v", i, row, s)
		}
		for _, vn := range strings.Split(feats, ",") {
			v := project.View(strings.TrimSuffix(vn, ":*"))
			key := larder.Int64Key(s.UserID)
			if v.EntityDef().Name == "item" {
				key = larder.Int64Key(s.ItemID)
			}
			l := &larder.Lookup{View: v, Keys: []larder.Key{key}}
			if err := st.Read(t.Context(), []*larder.Lookup{l}); err != nil {
				t.Fatal(err)
			}
			status := v.Status(l.Found[0], l.Rows[0].EventTime, t0)
			want := map[larder.Status]string{larder.StatusPresent: "present", larder.StatusStale: "stale", larder.StatusNotFound: "missing"}[status]
			if g := string(row[v.Name+":status"].ByteArray()); g != want {
				t.Errorf("row %d: %s:status = %q, want %q", i, v.Name, g, want)
			}
			if status == larder.StatusStale {
				stale++
			}
			for f, feat := range v.Features {
				name := v.Name + ":" + feat.Name
				var g larder.Value
				if col, ok := row[name]; ok {
					g = materializer.CellValue(feat.Type, []parquet.Value{col})
				} else if vs, ok := gotLists[i][name]; ok {
					g = materializer.CellValue(feat.Type, vs)
					if !g.IsNull() {
						lists++
					}
				} else {
					t.Fatalf("no column %s", name)
				}
				w := larder.Null
				if status == larder.StatusPresent {
					w = l.Rows[0].Values[f]
				}
				if !g.Equal(w) {
					t.Errorf("row %d (user %d, item %d): %s:%s = %v, want %v as stored", i, s.UserID, s.ItemID, v.Name, feat.Name, g, w)
				}
				checked++
			}
		}

		req := &larderv1.RankRequest{
			Ranker: demo.RankerName, ContextKey: int64Key(s.UserID), CandidateKeys: []*larderv1.EntityKey{int64Key(s.ItemID)},
			Explain: true, RequestFeatures: map[string]*larderv1.Value{},
		}
		req.RequestFeatures["hour_of_day"] = &larderv1.Value{Kind: &larderv1.Value_Int64Value{Int64Value: *s.HourOfDay}}
		resp, err := client.Rank(t.Context(), req)
		if err != nil {
			t.Fatal(err)
		}
		inputs := resp.GetCandidates()[0].GetExplanation().GetInputs()
		for j, in := range ranker.Inputs {
			g := row[materializer.InputColumn(ranker.Name, in.Ref)].Float()
			if math.Float32bits(g) != math.Float32bits(inputs[j]) {
				t.Errorf("row %d (user %d, item %d): %s = %v, Rank's explain says %v", i, s.UserID, s.ItemID, in.Ref, g, inputs[j])
			}
		}
	}
	if checked == 0 || lists == 0 {
		t.Fatalf("%d values checked, %d of them lists: the test checks too little", checked, lists)
	}
	t.Logf("%d rows, %d values checked (%d lists: embeddings and candidate lists), %d stale rows", len(spine), checked, lists, stale)
}

func ptrTo[T any](v T) *T { return &v }

// streamEvent is a row of the source of TestExportSkewStreaming.
type streamEvent struct {
	UserID int64     `parquet:"user_id"`
	TS     time.Time `parquet:"ts,timestamp(microsecond)"`
	Amount *float64  `parquet:"amount,optional"`
	Ratio  *float32  `parquet:"ratio,optional"`
	Qty    *int64    `parquet:"qty,optional"`
	Flag   *bool     `parquet:"flag,optional"`
	Page   *string   `parquet:"page,optional"`
}

// streamSpineRow is a row of the spine of TestExportSkewStreaming.
type streamSpineRow struct {
	UserID int64     `parquet:"user_id"`
	At     time.Time `parquet:"at,timestamp(microsecond)"`
	Label  int64     `parquet:"label"`
}

// streamSkewProject is the project of TestExportSkewStreaming: an
// aggregate view fed by a stream, with windows shorter than, equal to and
// longer than its horizon (max_age, 1h), of every function a streaming
// view takes (count_distinct is refused there), over every column type.
const streamSkewProject = `project: skew
entities:
  - {name: user, key: user_id, type: int64}
sources:
  - {name: events, path: data/events-*.parquet, event_time: ts}
views:
  - name: user_stream
    kind: aggregate
    entity: user
    source: events
    max_age: 1h
    tile: 1m
    aggregations:
      - {column: amount, type: float64, functions: [count, sum, mean, min, max, last], windows: [1m, 5m, 1h, 3h, 2d]}
      - {column: ratio, type: float32, functions: [count, sum, mean, min, max, last], windows: [5m, 3h]}
      - {column: qty, type: int64, functions: [count, sum, mean, min, max, last], windows: [1m, 1h, 2d]}
      - {column: flag, type: bool, functions: [count, sum, mean, min, max, last], windows: [5m, 2d]}
      - {column: page, type: string, functions: [count, last], windows: [1h, 2d]}
      - {name: events, functions: [count], windows: [1m, 3h]}
streams:
  - name: live
    view: user_stream
    redis_stream: events:live
`

// streamSkewWindows are the windows of streamSkewProject.
var streamSkewWindows = []time.Duration{time.Minute, 5 * time.Minute, time.Hour, 3 * time.Hour, 48 * time.Hour}

// streamSkewEvents returns random events of users 1..n up to after past
// the cutoff cut, a third of them on the edges of the windows, tiles and
// the horizon's split of each window (exactly on one, a microsecond before
// or after), some of one user at the same time (ties), a fifth of the
// values null, zeros of both signs, NaNs for every eighth user; then the
// events of users with nothing to aggregate at cut: n+1 has events after
// cut only (no row), n+2 only events older than every window, n+3 only
// null values, n+4 events exactly on the windows' starts only (out of
// them) and at cut (in every window); n+5 has no event at all. An event of
// user 1 is at cut + after, the source's newest.
func streamSkewEvents(rng *rand.Rand, n int64, cut time.Time, after time.Duration) []streamEvent {
	const tau, horizon = time.Minute, time.Hour
	edges := []time.Time{cut, cut.Add(-time.Microsecond), cut.Add(time.Microsecond), cut.Add(-tau), cut.Add(-tau + time.Microsecond), cut.Add(tau)}
	for _, w := range streamSkewWindows {
		for _, d := range []time.Duration{0, time.Microsecond, -time.Microsecond, horizon - tau, horizon, horizon + time.Microsecond, horizon + tau} {
			edges = append(edges, cut.Add(-w+d))
		}
	}
	oldest := cut.Add(-streamSkewWindows[len(streamSkewWindows)-1] - 2*time.Hour)
	span := cut.Add(after).Sub(oldest)
	pages := []string{"home", "cart", "search", "item"}
	event := func(u int64, at time.Time) streamEvent {
		e := streamEvent{UserID: u, TS: at}
		switch k := rng.IntN(12); {
		case k == 0:
		case k == 1:
			e.Amount = ptrTo(0.0)
		case k == 2:
			e.Amount = ptrTo(math.Copysign(0, -1))
		case k == 3:
			e.Amount = ptrTo(float64(rng.IntN(9) - 4))
		case k == 4 && u%8 == 0:
			e.Amount = ptrTo(math.NaN())
		default:
			e.Amount = ptrTo((rng.Float64()*2 - 1) * 1000)
		}
		switch k := rng.IntN(8); {
		case k == 0:
		case k == 1:
			e.Ratio = ptrTo(float32(math.Copysign(0, float64(rng.IntN(2)*2-1))))
		default:
			e.Ratio = ptrTo(float32((rng.Float64()*2 - 1) * 100))
		}
		switch k := rng.IntN(10); {
		case k < 2:
		case k == 2:
			// Sums wrap, as a run's do.
			e.Qty = ptrTo(int64(math.MaxInt64) - rng.Int64N(10))
		default:
			e.Qty = ptrTo(rng.Int64N(2001) - 1000)
		}
		if rng.IntN(5) > 0 {
			e.Flag = ptrTo(rng.IntN(2) == 0)
		}
		if rng.IntN(5) > 0 {
			e.Page = ptrTo(pages[rng.IntN(len(pages))])
		}
		return e
	}
	var events []streamEvent
	for u := int64(1); u <= n; u++ {
		var prev time.Time
		for k := rng.IntN(70); k >= 0; k-- {
			var at time.Time
			switch r := rng.IntN(10); {
			case r < 3:
				at = edges[rng.IntN(len(edges))]
			case r < 4 && !prev.IsZero():
				at = prev // a tie
			case r < 6:
				at = cut.Add(-time.Duration(rng.Int64N(int64(10 * time.Minute))))
			default:
				at = oldest.Add(time.Duration(rng.Int64N(int64(span))))
			}
			if at.After(cut.Add(after)) {
				at = cut.Add(after)
			}
			prev = at.Truncate(time.Microsecond)
			events = append(events, event(u, prev))
		}
	}
	events = append(events, event(1, cut.Add(after)))
	events = append(events, event(n+1, cut.Add(time.Microsecond)), event(n+1, cut.Add(after)))
	events = append(events, event(n+2, cut.Add(-49*time.Hour)), event(n+2, oldest))
	events = append(events, streamEvent{UserID: n + 3, TS: cut.Add(-30 * time.Second)}, streamEvent{UserID: n + 3, TS: cut.Add(-2 * time.Hour)})
	for _, w := range streamSkewWindows {
		events = append(events, event(n+4, cut.Add(-w)))
	}
	events = append(events, event(n+4, cut), event(n+4, cut))
	return events
}

// TestExportSkewStreaming is the training/serving skew test of a
// streaming aggregate view: a run of the view into a real Redis, whose
// cutoff C is its generation's as-of, is served by larder serve with its
// clock at C, and a spine of every entity at C is exported from the same
// files. At C the windows hold no stream tile, so GetFeatures answers the
// values of the run, and every exported value and status equals, bit for
// bit, the one GetFeatures returns for the entity. The files hold events
// after C (the last, partial tile, or more when the run's as-of is earlier
// than their end), which neither side counts at C.
func TestExportSkewStreaming(t *testing.T) {
	t.Parallel()
	cut := t0.Add(-30 * time.Minute)
	for _, tc := range []struct {
		name string
		// after is how far past the cutoff the files' events go; asOf,
		// when set, is the run's --as-of (else the clock, t0).
		after time.Duration
		asOf  time.Time
	}{
		{name: "cutoff from the files", after: 37*time.Second + 500*time.Microsecond},
		{name: "cutoff from the as-of", after: 25 * time.Minute, asOf: cut.Add(20 * time.Second)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testExportSkewStreaming(t, cut, tc.after, tc.asOf)
		})
	}
}

func testExportSkewStreaming(t *testing.T, cut time.Time, after time.Duration, asOf time.Time) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "larder.yaml")
	if err := os.WriteFile(cfg, []byte(streamSkewProject), 0o644); err != nil {
		t.Fatal(err)
	}
	const users = 48
	rng := rand.New(rand.NewPCG(uint64(after), 5))
	events := streamSkewEvents(rng, users, cut, after)
	// Three files, the events shuffled over them: read order is not time
	// order, within a tile or across tiles.
	rng.Shuffle(len(events), func(i, j int) { events[i], events[j] = events[j], events[i] })
	a, b := len(events)/3, 2*len(events)/3
	for i, part := range [][]streamEvent{events[:a], events[a:b], events[b:]} {
		writeParquet(t, filepath.Join(dir, "data", fmt.Sprintf("events-%d.parquet", i)), part)
	}

	redis := redistest.Start(t)
	args := []string{"--redis", redis.Addr, "-c", cfg, "materialize"}
	if !asOf.IsZero() {
		args = append(args, "--as-of", asOf.Format(time.RFC3339))
	}
	r := larderAt(t, t.Context(), t0, args...)
	mustSucceed(t, r, "materialize")
	if want := ", cutoff " + cut.Format(time.RFC3339) + " (the stream fills in after it)"; !strings.Contains(r.stdout, want) {
		t.Fatalf("materialize printed\n%s\nwant the cutoff %s", r.stdout, cut.Format(time.RFC3339))
	}
	// The NaNs make non-finite sums and means, which the run stores as
	// null (the view's non_finite rule), and so must GetFeatures answer.
	if !regexp.MustCompile(`value\(s\) stored as null \([0-9]+ non-finite\)`).MatchString(r.stdout) {
		t.Fatalf("materialize printed\n%s\nwant values nulled as non-finite", r.stdout)
	}
	project, err := config.Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	v := project.View("user_stream")
	if !v.Streaming() {
		t.Fatal("user_stream is not a streaming view")
	}
	st := store.New(redis.Client(), project.Name, store.Options{})
	g, err := st.Live(t.Context(), v)
	if err != nil {
		t.Fatal(err)
	}
	if !g.AsOf.Equal(cut) {
		t.Fatalf("the run's as-of is %v, want its cutoff %v", g.AsOf, cut)
	}

	// Every entity, in random order, at the run's as-of.
	var spine []streamSpineRow
	for u := int64(1); u <= users+5; u++ {
		spine = append(spine, streamSpineRow{UserID: u, At: cut, Label: u % 2})
	}
	rng.Shuffle(len(spine), func(i, j int) { spine[i], spine[j] = spine[j], spine[i] })
	writeParquet(t, filepath.Join(dir, "spine.parquet"), spine)
	out := filepath.Join(dir, "train.parquet")
	mustSucceed(t, larderAt(t, t.Context(), t0, "-c", cfg, "export", "--spine", filepath.Join(dir, "spine.parquet"),
		"--timestamp", "at", "--features", "user_stream:*", "--output", out, "--chunk-rows", "20"), "export")
	got, _ := readRows(t, out)
	if len(got) != len(spine) {
		t.Fatalf("%d rows exported, want %d", len(got), len(spine))
	}

	srv := startServeAt(t, cut, "--redis", redis.Addr, "-c", cfg, "serve", "--listen", "127.0.0.1:0")
	conn, err := grpc.NewClient(srv.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req := &larderv1.GetFeaturesRequest{Features: []string{"user_stream:*"}}
	for _, s := range spine {
		req.Keys = append(req.Keys, int64Key(s.UserID))
	}
	resp, err := larderv1.NewFeatureServiceClient(conn).GetFeatures(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	gens := resp.GetGenerations()
	if len(gens) != 1 || gens[0].GetGeneration() != g.ID || gens[0].GetTileTimeMicros() != cut.UnixMicro() {
		t.Fatalf("GetFeatures read %v, want generation %d as of its cutoff %v", gens, g.ID, cut)
	}
	served := columnsOf(t, resp)

	statusName := map[larderv1.FeatureStatus]string{
		larderv1.FeatureStatus_FEATURE_STATUS_PRESENT:   "present",
		larderv1.FeatureStatus_FEATURE_STATUS_STALE:     "stale",
		larderv1.FeatureStatus_FEATURE_STATUS_NOT_FOUND: "missing",
	}
	var diffs strings.Builder
	tw := tabwriter.NewWriter(&diffs, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "user\tcolumn\texport\tGetFeatures\t")
	mismatches, checked, present, missing, floats := 0, 0, 0, 0, 0
	differ := func(user int64, col string, export, serve any) {
		mismatches++
		if mismatches <= 60 {
			fmt.Fprintf(tw, "%d\t%s\t%v\t%v\t\n", user, col, export, serve)
		}
	}
	for i, s := range spine {
		row := got[i]
		if row["user_id"].Int64() != s.UserID || row["label"].Int64() != s.Label {
			t.Fatalf("row %d: spine columns %v, want %+v", i, row, s)
		}
		status := string(row["user_stream:status"].ByteArray())
		switch status {
		case "present":
			present++
		case "missing":
			missing++
		}
		for f, feat := range v.Features {
			name := v.Name + ":" + feat.Name
			col, ok := served.Column(name)
			if !ok {
				t.Fatalf("GetFeatures has no column %s", name)
			}
			if f == 0 {
				if sv := statusName[served.Status(col, i)]; sv != status {
					differ(s.UserID, "user_stream:status", status, sv)
				}
			}
			cell, ok := row[name]
			if !ok {
				t.Fatalf("no column %s", name)
			}
			e := materializer.CellValue(feat.Type, []parquet.Value{cell})
			w := servedValue(served, col, i, feat.Type)
			if !e.Equal(w) {
				differ(s.UserID, name, valueBits(e), valueBits(w))
			}
			checked++
			if e.Type() == larder.TypeFloat64 || e.Type() == larder.TypeFloat32 {
				floats++
			}
		}
	}
	if mismatches > 0 {
		tw.Flush()
		t.Errorf("%d of %d values or statuses differ between the export and GetFeatures at the cutoff %v (first 60):\n%s", mismatches, checked, cut, diffs.String())
	}
	if present < users/2 || missing < 2 || floats < 1000 {
		t.Fatalf("%d rows present, %d missing, %d float values: the test checks too little", present, missing, floats)
	}
	t.Logf("%d events, %d rows (%d present, %d missing), %d values checked, %d of them floats", len(events), len(spine), present, missing, checked, floats)

	// Ten minutes after the cutoff, the windows are recombined from the
	// tiles: a NaN the files hold, which the run stored as null (the
	// view's non_finite rule), is answered as null there too.
	later := startServeAt(t, cut.Add(10*time.Minute), "--redis", redis.Addr, "-c", cfg, "serve", "--listen", "127.0.0.1:0")
	lconn, err := grpc.NewClient(later.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer lconn.Close()
	resp, err = larderv1.NewFeatureServiceClient(lconn).GetFeatures(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	if gens := resp.GetGenerations(); len(gens) != 1 || gens[0].GetTileTimeMicros() != cut.Add(10*time.Minute).UnixMicro() {
		t.Fatalf("GetFeatures read %v, want the windows as of ten minutes after the cutoff", gens)
	}
	served = columnsOf(t, resp)
	nonFinite := 0
	for i, s := range spine {
		for _, feat := range v.Features {
			if feat.Type != larder.TypeFloat64 && feat.Type != larder.TypeFloat32 {
				continue
			}
			col, _ := served.Column(v.Name + ":" + feat.Name)
			if x := servedValue(served, col, i, feat.Type); !x.IsNull() && !x.Finite() {
				if nonFinite++; nonFinite <= 10 {
					t.Errorf("user %d, %s ten minutes after the cutoff: %v, want null (non_finite: null)", s.UserID, feat.Name, x)
				}
			}
		}
	}
	if nonFinite > 0 {
		t.Errorf("%d non-finite values served ten minutes after the cutoff", nonFinite)
	}
}

// servedValue returns the value of column col in row row of a GetFeatures
// response as a larder.Value of type typ.
func servedValue(f *larderclient.Features, col, row int, typ larder.Type) larder.Value {
	if f.IsNull(col, row) {
		return larder.Null
	}
	switch typ {
	case larder.TypeInt64:
		return larder.Int64Value(f.Int64(col, row))
	case larder.TypeFloat64:
		return larder.Float64Value(f.Float64(col, row))
	case larder.TypeFloat32:
		return larder.Float32Value(f.Float32(col, row))
	case larder.TypeBool:
		return larder.BoolValue(f.Bool(col, row))
	case larder.TypeString:
		return larder.StringValue(f.String(col, row))
	}
	panic(fmt.Sprintf("servedValue: type %v", typ))
}

// valueBits formats x for a table of mismatches: a float with its bits.
func valueBits(x larder.Value) string {
	switch x.Type() {
	case larder.TypeFloat64:
		return fmt.Sprintf("%v (%#016x)", x, math.Float64bits(x.Float64()))
	case larder.TypeFloat32:
		return fmt.Sprintf("%v (%#08x)", x, math.Float32bits(x.Float32()))
	}
	return x.String()
}

// TestExportCommandErrors checks that bad flags are refused with the flag
// and the fix named, before anything is read.
func TestExportCommandErrors(t *testing.T) {
	t.Parallel()
	_, cfg := demoProject(t)
	spine := filepath.Join(filepath.Dir(cfg), demo.ImpressionsFile)
	// The output of a case that would be accepted goes there, not here.
	out := filepath.Join(t.TempDir(), "o.parquet")
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"no spine", []string{"--timestamp", "shown_at", "--ranker", demo.RankerName, "--output", "o.parquet"}, "--spine: name the Parquet file"},
		{"no timestamp", []string{"--spine", spine, "--ranker", demo.RankerName, "--output", "o.parquet"}, "--timestamp: name the spine column"},
		{"nothing", []string{"--spine", spine, "--timestamp", "shown_at", "--output", "o.parquet"}, "nothing to export"},
		{"unknown ranker", []string{"--spine", spine, "--timestamp", "shown_at", "--ranker", "nope", "--output", "o.parquet"}, `--ranker: unknown ranker "nope"`},
		{"bad key", []string{"--spine", spine, "--timestamp", "shown_at", "--ranker", demo.RankerName, "--key", "user", "--output", "o.parquet"}, "want ENTITY=COLUMN"},
		{"unknown entity", []string{"--spine", spine, "--timestamp", "shown_at", "--ranker", demo.RankerName, "--key", "shop=id", "--output", "o.parquet"}, `unknown entity "shop"`},
		{"no timestamp column", []string{"--spine", spine, "--timestamp", "shown", "--ranker", demo.RankerName, "--output", "o.parquet"},
			`export: spine file ` + spine + ` has no column "shown" (the spine's time column, --timestamp); did you mean "shown_at"? its columns are user_id, item_id, shown_at, hour_of_day, clicked: name the spine's time column with --timestamp COLUMN`},
		{"timestamp column of another type", []string{"--spine", spine, "--timestamp", "clicked", "--ranker", demo.RankerName, "--output", "o.parquet"},
			`export: spine file ` + spine + `: column "clicked" (the spine's time column, --timestamp) is INT64, want INT64 TIMESTAMP (MILLIS, MICROS or NANOS) or INT32 DATE: name another column as the spine's time column with --timestamp COLUMN, or fix the spine`},
		{"no key column", []string{"--spine", spine, "--timestamp", "shown_at", "--features", "user_profile:*", "--key", "user=viewer", "--output", "o.parquet"},
			`export: spine file ` + spine + ` has no column "viewer" (the int64 key of entity "user"); its columns are user_id, item_id, shown_at, hour_of_day, clicked: name the spine column of entity user's keys with --key user=COLUMN`},
		{"no context column", []string{"--spine", spine, "--timestamp", "shown_at", "--ranker", demo.RankerName, "--context-column", "viewer", "--output", "o.parquet"},
			`has no column "viewer" (the int64 key of entity "user"); its columns are user_id, item_id, shown_at, hour_of_day, clicked: name the spine column of the context keys with --context-column COLUMN`},
		{"an entity's key named twice", []string{"--spine", spine, "--timestamp", "shown_at", "--features", "user_profile:*", "--key", "user=user_id", "--key", "user=item_id", "--output", out},
			`--key "user=item_id": the keys of entity user are named already, by --key "user=user_id": name them once`},
		{"context column without a ranker", []string{"--spine", spine, "--timestamp", "shown_at", "--features", "user_profile:*", "--context-column", "user_id", "--output", out},
			"--context-column names the context keys of --ranker, and no --ranker is given: name the spine column of an entity's keys for --features with --key ENTITY=COLUMN"},
		{"candidate column without a ranker", []string{"--spine", spine, "--timestamp", "shown_at", "--features", "user_profile:*", "--candidate-column", "item_id", "--output", out},
			"--candidate-column names the candidate keys of --ranker, and no --ranker is given"},
		{"spine is output", []string{"--spine", spine, "--timestamp", "shown_at", "--ranker", demo.RankerName, "--output", spine}, "is the spine too"},
		{"unknown compression", []string{"--spine", "no-such-spine.parquet", "--timestamp", "shown_at", "--ranker", demo.RankerName, "--output", "o.parquet", "--compression", "lz4"},
			`--compression "lz4": want one of snappy, zstd, none`},
		{"empty compression", []string{"--spine", spine, "--timestamp", "shown_at", "--ranker", demo.RankerName, "--output", "o.parquet", "--compression", ""},
			`--compression "": want one of snappy, zstd, none`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := larderAt(t, t.Context(), t0, append([]string{"-c", cfg, "export"}, tt.args...)...)
			if r.code == 0 || !strings.Contains(r.stderr, tt.want) {
				t.Errorf("export %v: exit %d, stderr %q; want a failure saying %q", tt.args, r.code, r.stderr, tt.want)
			}
			// The words of another command's input do not apply.
			if strings.Contains(r.stderr, "input file") || strings.Contains(r.stderr, "job's arguments") {
				t.Errorf("export %v: stderr %q speaks of a job's input", tt.args, r.stderr)
			}
		})
	}
}

// TestExportNeedsNoStorePassword exports from a project whose
// redis.password_env names a variable that is not set: export needs no
// store, so it needs no password either.
func TestExportNeedsNoStorePassword(t *testing.T) {
	t.Parallel()
	_, cfg := demoProject(t)
	data, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	const env = "LARDER_TEST_EXPORT_UNSET_PASSWORD"
	data = []byte(strings.Replace(string(data), "project: shop\n", "project: shop\nredis:\n  addresses: [\"127.0.0.1:1\"]\n  password_env: "+env+"\n", 1))
	if err := os.WriteFile(cfg, data, 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(cfg)
	out := filepath.Join(dir, "train.parquet")
	r := larderAt(t, t.Context(), t0, "-c", cfg, "export", "--spine", filepath.Join(dir, demo.ImpressionsFile),
		"--timestamp", demo.ImpressionTime, "--features", "user_profile:*", "--output", out)
	mustSucceed(t, r, "export")
	// A command that uses the store still wants the password.
	r = larderAt(t, t.Context(), t0, "-c", cfg, "views")
	if r.code == 0 || !strings.Contains(r.stderr, "environment variable "+env+" is not set") {
		t.Errorf("views: exit %d, stderr %q; want the unset variable reported", r.code, r.stderr)
	}
}

// TestExportOutputFile writes the output with the permissions the umask
// leaves, as other files, and removes the temporary file an export killed
// while writing the same output left behind.
func TestExportOutputFile(t *testing.T) {
	t.Parallel()
	_, cfg := demoProject(t)
	dir := filepath.Dir(cfg)
	out := filepath.Join(dir, "train.parquet")
	stale := filepath.Join(dir, ".train.parquet.123456.tmp")
	other := filepath.Join(dir, ".other.parquet.123456.tmp")
	for _, p := range []string{stale, other} {
		if err := os.WriteFile(p, []byte("half an export"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	r := larderAt(t, t.Context(), t0, "-c", cfg, "export", "--spine", filepath.Join(dir, demo.ImpressionsFile),
		"--timestamp", demo.ImpressionTime, "--features", "user_profile:*", "--output", out)
	mustSucceed(t, r, "export")
	fi, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("the output's mode is %v, want -rw-r--r-- under umask 022", fi.Mode().Perm())
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("the temporary file of an earlier export of the same output is left: %v", err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("the temporary file of another output: %v", err)
	}
}

// TestExportCompression exports the demo's impressions (a spine in zstd)
// with a ranker's inputs, a latest view and a candidates view's lists, with
// each --compression and without it, and checks the codec of every column
// chunk of the output: the columns the export adds in the codec asked for,
// Snappy by default, and the spine's columns in the spine's own, whatever
// the flag.
func TestExportCompression(t *testing.T) {
	t.Parallel()
	_, cfg := demoProject(t)
	dir := filepath.Dir(cfg)
	spine := filepath.Join(dir, demo.ImpressionsFile)
	spineCodecs := map[string]format.CompressionCodec{}
	for _, rg := range parquettest.Open(t, spine).Metadata().RowGroups {
		for _, cc := range rg.Columns {
			spineCodecs[strings.Join(cc.MetaData.PathInSchema, ".")] = cc.MetaData.Codec
		}
	}
	for col, c := range spineCodecs {
		if c != format.Zstd {
			t.Fatalf("the demo's spine column %s is in %v, want zstd: the test checks too little", col, c)
		}
	}
	for _, tt := range []struct {
		flag []string
		want format.CompressionCodec
	}{
		{nil, format.Snappy},
		{[]string{"--compression", "snappy"}, format.Snappy},
		{[]string{"--compression", "zstd"}, format.Zstd},
		{[]string{"--compression", "none"}, format.Uncompressed},
	} {
		out := filepath.Join(dir, "train.parquet")
		args := append([]string{"-c", cfg, "export", "--spine", spine, "--timestamp", demo.ImpressionTime,
			"--ranker", demo.RankerName, "--features", "user_profile:*,user_recs:*", "--output", out}, tt.flag...)
		mustSucceed(t, larderAt(t, t.Context(), t0, args...), "export")
		groups := parquettest.Open(t, out).Metadata().RowGroups
		if len(groups) == 0 {
			t.Fatalf("export %v: no row group", tt.flag)
		}
		var added []string
		for g, rg := range groups {
			for _, cc := range rg.Columns {
				col := strings.Join(cc.MetaData.PathInSchema, ".")
				want, ok := spineCodecs[col]
				if !ok {
					want = tt.want
					if g == 0 {
						added = append(added, col)
					}
				}
				if cc.MetaData.Codec != want {
					t.Errorf("export %v: row group %d, column %s: codec %v, want %v", tt.flag, g, col, cc.MetaData.Codec, want)
				}
			}
		}
		for _, col := range []string{"user_profile:status", "user_recs:candidates.list.element", "user_recs:scores.list.element", demo.RankerName + ":request:hour_of_day"} {
			if !slices.Contains(added, col) {
				t.Errorf("export %v: added columns %v, want %s among them", tt.flag, added, col)
			}
		}
	}
}

// TestExportNamesSpineRows checks that a spine row export refuses is named
// by its file and its row in the file, counting from 0, whatever the
// row groups and the files before it.
func TestExportNamesSpineRows(t *testing.T) {
	t.Parallel()
	_, cfg := demoProject(t)
	dir := filepath.Dir(cfg)
	type nullableTime struct {
		UserID    int64      `parquet:"user_id"`
		ItemID    int64      `parquet:"item_id"`
		At        *time.Time `parquet:"at,optional,timestamp(microsecond)"`
		HourOfDay *int64     `parquet:"hour_of_day,optional"`
	}
	at, hour := t0.Add(-time.Hour), int64(3)
	rows := func(nullAt, nullHour int) []nullableTime {
		var rs []nullableTime
		for i := range 5 {
			r := nullableTime{UserID: 1, ItemID: 1, At: &at, HourOfDay: &hour}
			if i == nullAt {
				r.At = nil
			}
			if i == nullHour {
				r.HourOfDay = nil
			}
			rs = append(rs, r)
		}
		return rs
	}
	for _, tt := range []struct {
		name             string
		nullAt, nullHour int
		want             string
	}{
		{"null timestamp", 3, -1, "b.parquet row 3 has a null timestamp (column \"at\")"},
		{"null request feature", -1, 3, "b.parquet row 3: request feature \"hour_of_day\" is null"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			spine := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-"))
			writeParquet(t, filepath.Join(spine, "a.parquet"), rows(-1, -1))
			writeParquet(t, filepath.Join(spine, "b.parquet"), rows(tt.nullAt, tt.nullHour), parquet.MaxRowsPerRowGroup(2))
			r := larderAt(t, t.Context(), t0, "-c", cfg, "export", "--spine", spine, "--timestamp", "at",
				"--ranker", demo.RankerName, "--output", filepath.Join(dir, "out.parquet"))
			if want := "spine file " + filepath.Join(spine, tt.want); r.code == 0 || !strings.Contains(r.stderr, want) {
				t.Errorf("exit %d, stderr %q; want a failure saying %q", r.code, r.stderr, want)
			}
		})
	}
}

// TestExportSummary checks the closing summary: the spine rows, the
// columns added (not counting the spine's), and the nulls by reason.
func TestExportSummary(t *testing.T) {
	t.Parallel()
	_, cfg := demoProject(t)
	dir := filepath.Dir(cfg)
	r := larderAt(t, t.Context(), t0, "-c", cfg, "export", "--spine", filepath.Join(dir, demo.ImpressionsFile),
		"--timestamp", demo.ImpressionTime, "--ranker", demo.RankerName, "--output", filepath.Join(dir, "train.parquet"))
	mustSucceed(t, r, "export")
	if want := regexp.MustCompile(`^export: \d+ spine rows written to \S+ with 12 column\(s\) added, `); !want.MatchString(r.stdout) {
		t.Errorf("summary %q, want it to match %s", r.stdout, want)
	}
}
