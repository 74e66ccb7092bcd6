package server_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/larder-dev/larder"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
	"github.com/larder-dev/larder/server"
)

// maxEcho bounds the length of an error message that repeats a string of a
// request: the message itself, the limits it names and the project's names
// it lists, and at most 100 runes of the string.
const maxEcho = 600

// wantShort is wantCode, and the message is at most maxEcho bytes long and
// valid UTF-8.
func wantShort(tb testing.TB, err error, code codes.Code, substrs ...string) {
	tb.Helper()
	wantCode(tb, err, code, substrs...)
	msg := status.Convert(err).Message()
	if len(msg) > maxEcho {
		tb.Errorf("the %s message is %d bytes long, want at most %d: %.300s…", code, len(msg), maxEcho, msg)
	}
	if !utf8.ValidString(msg) {
		tb.Errorf("the %s message is not valid UTF-8: %q", code, msg)
	}
}

// TestLimitGetFeatures checks the limits of a GetFeatures request: the
// number of feature references, keys × columns (with repeated columns
// folded), the length and encoding of references and keys, and the size
// of the response. A request refused for its size or shape reads nothing.
func TestLimitGetFeatures(t *testing.T) {
	cs := &countingStore{}
	f := newFixture(t, fixtureConfig{
		edit: func(p *larder.Project) { p.Server.MaxFeatures, p.Server.MaxRequestCells = 10, 100 },
		wrap: func(fs larder.FeatureStore) larder.FeatureStore {
			cs.FeatureStore = fs
			return cs
		},
	})
	ctx := context.Background()
	keys := func(n int) []*larderv1.EntityKey {
		ks := make([]*larderv1.EntityKey, n)
		for i := range ks {
			ks[i] = intKey(int64(i%4 + 1))
		}
		return ks
	}
	copies := func(n int, ref string) []string {
		refs := make([]string, n)
		for i := range refs {
			refs[i] = ref
		}
		return refs
	}
	mega := strings.Repeat("v", 1<<20)

	tests := []struct {
		name     string
		keys     []*larderv1.EntityKey
		features []string
		code     codes.Code
		want     []string
	}{
		{"more references than max_features", keys(1), copies(11, "user_profile:age"),
			codes.InvalidArgument, []string{"features: 11 feature references", "limit of 10 per request (server.max_features)"}},
		{"keys × columns past max_request_cells", keys(15), []string{"user_profile:*"},
			codes.ResourceExhausted, []string{"request too large", "15 keys × 7 columns is 105 values", "limit of 100 per request (server.max_request_cells)", "at most 14 keys"}},
		{"keys × columns of two views", keys(12), []string{"user_stats:*", "user_profile:*"},
			codes.ResourceExhausted, []string{"12 keys × 9 columns is 108 values"}},
		{"a reference of a megabyte", keys(1), []string{mega + ":age"},
			codes.InvalidArgument, []string{"features[0]: \"vvvv", "\"… (1048580 bytes) is longer than any the project has (at most 257 bytes)"}},
		{"a feature of a megabyte", keys(1), []string{"user_profile:age", "user_profile:" + mega},
			codes.InvalidArgument, []string{"features[1]: \"user_profile:vvv", "(1048589 bytes)"}},
		{"an unknown view of 200 bytes", keys(1), []string{strings.Repeat("w", 200) + ":age"},
			codes.InvalidArgument, []string{"unknown view \"" + strings.Repeat("w", 100) + "\"… (200 bytes)", "(the server's project srvtest has views: user_profile"}},
		{"an unknown feature of 120 bytes", keys(1), []string{"user_profile:" + strings.Repeat("é", 60)},
			codes.InvalidArgument, []string{"has no feature \"" + strings.Repeat("é", 60) + "\" (features: age"}},
		{"a reference that is not UTF-8", keys(1), []string{"user_profile:ag\xe9"},
			codes.InvalidArgument, []string{`features[0]: "user_profile:ag\xe9" is not valid UTF-8`}},
		{"a string key that is not UTF-8", strKeys("i1", "i\xff\xfe"), []string{"item_info:price"},
			codes.InvalidArgument, []string{`keys[1]: string key "i\xff\xfe" is not valid UTF-8`}},
		{"a string key of a megabyte that is not UTF-8", strKeys(strings.Repeat("\xff", 1<<20)), []string{"item_info:price"},
			codes.InvalidArgument, []string{`keys[0]: string key "\xff\xff`, "… (1048576 bytes) is not valid UTF-8"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs.take()
			_, err := f.client.GetFeatures(ctx, &larderv1.GetFeaturesRequest{Keys: tt.keys, Features: tt.features})
			wantShort(t, err, tt.code, tt.want...)
			if reads := cs.take(); len(reads) != 0 {
				t.Errorf("the refused request read the store: %v", reads)
			}
		})
	}

	t.Run("repeated references are one column each", func(t *testing.T) {
		// 14 keys × 7 columns is within the 98 values of the limit,
		// however often the columns are asked for.
		refs := append(copies(9, "user_profile:*"), "user_profile:age")
		resp, err := f.client.GetFeatures(ctx, &larderv1.GetFeaturesRequest{Keys: keys(14), Features: refs})
		if err != nil {
			t.Fatal(err)
		}
		if n := len(resp.GetColumns()); n != 7 {
			t.Errorf("%d columns, want the 7 of user_profile: %q", n, columnNames(resp))
		}
		for i, r := range rowsOf(resp) {
			if len(r) != 7 {
				t.Fatalf("rows[%d] has %d values, want 7", i, len(r))
			}
		}
		if reads := cs.take(); len(reads) != 1 || len(reads[0]) != 1 {
			t.Errorf("reads = %v, want one round trip reading user_profile once", reads)
		}
	})

	t.Run("max_response_bytes", func(t *testing.T) {
		p := testProject(t, func(p *larder.Project) { p.Server.MaxResponseBytes = 1024 })
		srv := serve(t, server.Config{Project: p, Store: f.store, Models: map[string]server.Model{"reco": f.model}, Now: f.clock.Now}, 0)
		// 60 rows of every type come to about 2 KB.
		_, err := srv.client.GetFeatures(ctx, &larderv1.GetFeaturesRequest{Keys: keys(60), Features: []string{"user_profile:*", "user_stats:*"}})
		wantShort(t, err, codes.ResourceExhausted, "response too large", "rows are about", "limit of 1024 (server.max_response_bytes)", "fewer keys")
		resp, err := srv.client.GetFeatures(ctx, &larderv1.GetFeaturesRequest{Keys: keys(4), Features: []string{"user_profile:*", "user_stats:*"}})
		if err != nil {
			t.Fatalf("4 rows: %v", err)
		}
		if n := resp.SizeVT(); n > 1024 {
			t.Errorf("a response of %d bytes was sent, past the limit of 1024", n)
		}
	})
}

// TestLimitRank checks the limits of a Rank request: candidates × model
// inputs, the length and encoding of the names and keys it carries, and
// the cut of a stored candidate list to the limits.
func TestLimitRank(t *testing.T) {
	cs := &countingStore{}
	// The reco ranker has 8 inputs: 80 values are 10 candidates.
	f := newFixture(t, fixtureConfig{
		edit: func(p *larder.Project) {
			withCandidates(p)
			p.Server.MaxRequestCells = 80
		},
		wrap: func(fs larder.FeatureStore) larder.FeatureStore {
			cs.FeatureStore = fs
			return cs
		},
	})
	ctx := context.Background()
	var items []string
	for i := range testMaxCandidates {
		items = append(items, fmt.Sprintf("x%02d", i))
	}
	mega := strings.Repeat("r", 1<<20)
	rank := func(edit func(*larderv1.RankRequest)) error {
		req := &larderv1.RankRequest{Ranker: "reco", ContextKey: intKey(1), CandidateKeys: strKeys(items[:10]...),
			RequestFeatures: map[string]*larderv1.Value{"hour": intVal(13), "mobile": boolVal(true)}}
		edit(req)
		_, err := f.client.Rank(ctx, req)
		return err
	}

	tests := []struct {
		name string
		edit func(*larderv1.RankRequest)
		code codes.Code
		want []string
	}{
		{"candidates × inputs past max_request_cells", func(r *larderv1.RankRequest) { r.CandidateKeys = strKeys(items[:11]...) },
			codes.ResourceExhausted, []string{"request too large", `11 candidates × 8 inputs of ranker "reco" is 88 values`, "limit of 80 per request (server.max_request_cells)", "at most 10 candidates"}},
		{"a ranker name of a megabyte", func(r *larderv1.RankRequest) { r.Ranker = mega },
			codes.InvalidArgument, []string{`ranker: "rrrr`, "… (1048576 bytes) is longer than any the project has (at most 128 bytes)", "(the server's project srvtest has rankers: reco)"}},
		{"an unknown ranker of 128 bytes", func(r *larderv1.RankRequest) { r.Ranker = mega[:128] },
			codes.InvalidArgument, []string{`unknown ranker "` + mega[:100] + `"… (128 bytes)`}},
		{"a ranker name that is not UTF-8", func(r *larderv1.RankRequest) { r.Ranker = "rec\xf0" },
			codes.InvalidArgument, []string{`ranker: "rec\xf0" is not valid UTF-8`}},
		{"a request feature name of a megabyte", func(r *larderv1.RankRequest) { r.RequestFeatures[mega] = intVal(1) },
			codes.InvalidArgument, []string{`request_features: "rrrr`, "(1048576 bytes) is longer than any", "(it takes: hour, mobile)"}},
		{"a request feature name that is not UTF-8", func(r *larderv1.RankRequest) { r.RequestFeatures["hour\xff"] = intVal(1) },
			codes.InvalidArgument, []string{`request_features: "hour\xff" is not valid UTF-8`}},
		{"an unknown request feature of 100 bytes", func(r *larderv1.RankRequest) { r.RequestFeatures[mega[:101]] = intVal(1) },
			codes.InvalidArgument, []string{`has no request feature "` + mega[:100] + `"… (101 bytes)`}},
		{"a candidate key that is not UTF-8", func(r *larderv1.RankRequest) { r.CandidateKeys[3] = strKey("x\xc3") },
			codes.InvalidArgument, []string{`candidate_keys[3]: string key "x\xc3" is not valid UTF-8`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs.take()
			wantShort(t, rank(tt.edit), tt.code, tt.want...)
			if reads := cs.take(); len(reads) != 0 {
				t.Errorf("the refused request read the store: %v", reads)
			}
		})
	}
	t.Run("candidates × inputs at max_request_cells", func(t *testing.T) {
		if err := rank(func(*larderv1.RankRequest) {}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("a stored list is cut to max_request_cells", func(t *testing.T) {
		publish(t, f.store, f.project, "user_recs", map[larder.Key]larder.Row{larder.Int64Key(1): recs(f, items...)})
		req := &larderv1.RankRequest{Ranker: "reco", ContextKey: intKey(1), TopK: 100,
			RequestFeatures: map[string]*larderv1.Value{"hour": intVal(13), "mobile": boolVal(true)}}
		stored, err := f.client.Rank(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		req.CandidateKeys = strKeys(items[:10]...)
		explicit, err := f.client.Rank(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if len(stored.GetCandidates()) != 10 {
			t.Fatalf("%d candidates ranked from a stored list of 16, want the first 10", len(stored.GetCandidates()))
		}
		for i, c := range stored.GetCandidates() {
			if c.GetKey().GetStringValue() != explicit.GetCandidates()[i].GetKey().GetStringValue() {
				t.Fatalf("the stored list ranks as %v, its first 10 candidates as %v", stored.GetCandidates(), explicit.GetCandidates())
			}
		}
	})
}
