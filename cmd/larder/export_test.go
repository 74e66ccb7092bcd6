package main

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/larder-dev/larder"
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
	// ingest's TestStreamingAggregateEquivalence).
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

// TestExportCommandErrors checks that bad flags are refused with the flag
// and the fix named, before anything is read.
func TestExportCommandErrors(t *testing.T) {
	_, cfg := demoProject(t)
	spine := filepath.Join(filepath.Dir(cfg), demo.ImpressionsFile)
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
		{"spine is output", []string{"--spine", spine, "--timestamp", "shown_at", "--ranker", demo.RankerName, "--output", spine}, "is the spine too"},
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
