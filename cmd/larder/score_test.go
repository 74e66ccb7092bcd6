package main

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/config"
	"github.com/larder-dev/larder/materializer"
	"github.com/larder-dev/larder/models"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
	"github.com/larder-dev/larder/store"
)

// scoreRanker is the ranker the scoring test adds to the tiny project: view
// inputs of both sides with and without defaults, and request features of
// three types, one of them required.
const scoreRanker = `
rankers:
  - name: shelf
    model: shelf.onnx
    context: user
    candidate: item
    inputs:
      - user_profile:age
      - {ref: user_profile:score, default: 0.5}
      - user_profile:premium
      - {ref: item_profile:price, default: 9.5}
      - {ref: "request:discount", type: float64, default: 0.25}
      - {ref: "request:hour", type: int64}
      - {ref: "request:promo", type: bool, default: true}
      - {ref: user_profile:ctr, default: -1}
`

// scoreInput is a row of the scoring test's input.
type scoreInput struct {
	UserID   int64    `parquet:"user_id"`
	SKU      string   `parquet:"sku"`
	Discount *float64 `parquet:"discount,optional"`
	Hour     int64    `parquet:"hour"`
	Promo    *bool    `parquet:"promo,optional"`
}

// scoreInputBare is a row of an input without the columns of the request
// features that have defaults.
type scoreInputBare struct {
	UserID int64  `parquet:"user_id"`
	SKU    string `parquet:"sku"`
	Hour   int64  `parquet:"hour"`
}

type scoreOutput struct {
	UserID int64   `parquet:"user_id"`
	SKU    string  `parquet:"sku"`
	Score  float32 `parquet:"score"`
}

// TestScoreMatchesRank scores a Parquet input with a ranker through the
// materializer and checks that every score is, bit for bit, the score the
// served ranker gives the same candidate for the same context and request
// features at the same instant. The tiny project's users and items cover
// the cases: stale rows (user 2, item B-200), a null value (user 3's age),
// a NaN (user 3's score), users and items with no row (77, Z-999), and null
// or absent request features with defaults.
func TestScoreMatchesRank(t *testing.T) {
	p := newTinyProject(t)
	f, err := os.OpenFile(p.config, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(scoreRanker); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	net, err := models.NewRandomNet(8, []int{16}, 1, 3)
	if err != nil {
		t.Fatal(err)
	}
	var model bytes.Buffer
	if err := net.WriteONNX(&model, "features", "score"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(p.dir, "shelf.onnx"), model.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	mustSucceed(t, p.larder(t, t0, "materialize", "user_profile", "item_profile"), "materialize")
	srv := startServe(t, "--redis", p.redis.Addr, "-c", p.config, "serve", "--listen", "127.0.0.1:0")

	// Every user and item, with request features varied row by row: some
	// null, the second file without the columns of those with defaults.
	users := []int64{1, 2, 3, 12, 120, 77}
	items := []string{"A-100", "B-200", "C-300", "Z-999"}
	var full []scoreInput
	var bare []scoreInputBare
	for i, u := range users {
		for j, it := range items {
			for v := range 3 {
				// The request features depend on the user and v only, so
				// that a user's items share them.
				row := scoreInput{UserID: u, SKU: it, Hour: int64((i*7 + v*5) % 24)}
				if v != 1 {
					d := float64(i+v) / 8
					row.Discount = &d
				}
				if v != 2 {
					pr := (i+v)%2 == 0
					row.Promo = &pr
				}
				full = append(full, row)
			}
			bare = append(bare, scoreInputBare{UserID: u, SKU: it, Hour: int64(i + j)})
		}
	}
	writeParquet(t, filepath.Join(p.dir, "score-in", "part-0.parquet"), full)
	writeParquet(t, filepath.Join(p.dir, "score-in", "part-1.parquet"), bare)

	project, err := config.Load(p.config)
	if err != nil {
		t.Fatal(err)
	}
	client := p.redis.Client()
	st := store.New(client, project.Name, store.Options{})
	loader := &lazyModels{ctx: t.Context(), a: &app{stderr: io.Discard}}
	defer loader.close()
	m := materializer.New(project, st, materializer.Options{Now: func() time.Time { return t0 }, Models: loader.load, Reader: st})
	// A small batch size: rows of one user span batches.
	rep, err := m.Score(t.Context(), larder.ScoreArgs{Ranker: "shelf", Input: "score-in", Output: "scores.parquet", BatchSize: 7})
	if err != nil {
		t.Fatal(err)
	}
	out := readScores(t, rep.Output)
	if len(out) != len(full)+len(bare) {
		t.Fatalf("%d output rows, want %d", len(out), len(full)+len(bare))
	}

	conn, err := grpc.NewClient(srv.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rank := larderv1.NewFeatureServiceClient(conn)
	// One Rank per input row, and one per (user, request features) of the
	// first file with all its candidates: a score must not depend on the
	// other rows scored with it.
	type group struct {
		req   map[string]*larderv1.Value
		rows  []int
		cands []*larderv1.EntityKey
	}
	var groups []*group
	byReq := map[string]*group{}
	for i := range out {
		var u int64
		var sku string
		req := map[string]*larderv1.Value{}
		if i < len(full) {
			r := full[i]
			u, sku = r.UserID, r.SKU
			req["hour"] = &larderv1.Value{Kind: &larderv1.Value_Int64Value{Int64Value: r.Hour}}
			if r.Discount != nil {
				req["discount"] = &larderv1.Value{Kind: &larderv1.Value_Float64Value{Float64Value: *r.Discount}}
			}
			if r.Promo != nil {
				req["promo"] = &larderv1.Value{Kind: &larderv1.Value_BoolValue{BoolValue: *r.Promo}}
			}
		} else {
			r := bare[i-len(full)]
			u, sku = r.UserID, r.SKU
			req["hour"] = &larderv1.Value{Kind: &larderv1.Value_Int64Value{Int64Value: r.Hour}}
		}
		if out[i].UserID != u || out[i].SKU != sku {
			t.Fatalf("output row %d is (%d, %s), want (%d, %s)", i, out[i].UserID, out[i].SKU, u, sku)
		}
		cand := &larderv1.EntityKey{Key: &larderv1.EntityKey_StringValue{StringValue: sku}}
		groups = append(groups, &group{req: req, rows: []int{i}, cands: []*larderv1.EntityKey{cand}})
		if i < len(full) {
			id := fmt.Sprint(u, req["hour"], req["discount"], req["promo"])
			g := byReq[id]
			if g == nil {
				g = &group{req: req}
				byReq[id] = g
				groups = append(groups, g)
			}
			g.rows, g.cands = append(g.rows, i), append(g.cands, cand)
		}
	}
	compared := 0
	for _, g := range groups {
		u := out[g.rows[0]].UserID
		resp, err := rank.Rank(t.Context(), &larderv1.RankRequest{
			Ranker: "shelf", ContextKey: int64Key(u), CandidateKeys: g.cands, RequestFeatures: g.req, TopK: int32(len(g.cands)),
		})
		if err != nil {
			t.Fatalf("Rank(user %d, %v): %v", u, g.req, err)
		}
		if resp.GetModelVersion() != rep.Model || resp.GetDegraded() {
			t.Fatalf("Rank answered with model %q (degraded %v), the job scored with %q", resp.GetModelVersion(), resp.GetDegraded(), rep.Model)
		}
		scores := map[string]float32{}
		for _, c := range resp.GetCandidates() {
			scores[c.GetKey().GetStringValue()] = c.GetScore()
		}
		for _, i := range g.rows {
			want, ok := scores[out[i].SKU]
			got := out[i].Score
			if !ok || math.Float32bits(got) != math.Float32bits(want) && !(math.IsNaN(float64(got)) && math.IsNaN(float64(want))) {
				t.Errorf("row %d (user %d, item %s, request %v): score %v, Rank gives %v", i, u, out[i].SKU, g.req, got, want)
			}
			compared++
		}
	}
	t.Logf("%d scores compared with Rank in %d calls", compared, len(groups))
}

// readScores reads the output of a ranker's scoring job.
func readScores(tb testing.TB, path string) []scoreOutput {
	tb.Helper()
	rows, err := parquet.ReadFile[scoreOutput](path)
	if err != nil {
		tb.Fatal(err)
	}
	return rows
}
