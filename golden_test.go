package larder_test

import (
	"encoding/hex"
	"math"
	"testing"

	"github.com/larder-dev/larder"
)

// The vectors in this file pin what the store keeps in Redis and what a
// running process computes the same way as every other: the canonical text
// of entity keys (the fields of the bucket hashes), the hash that places a
// key in a shard (and, in the store, in a bucket), and the schema
// fingerprint recorded with every generation. Round trips cannot catch a
// change made on both sides at once; these literal bytes can, and a rolling
// upgrade depends on them: an old reader must find what a new writer wrote,
// and a sharded run's workers may run two releases at once.
//
// Changing an expected value here is a storage format change. It needs a
// new codec version (store.codecVersion), a migration note in the release
// notes and in docs/operations.md, and a new compatibility fixture (see
// store/compat_test.go). Never edit a vector to make a failing test pass.

// TestKeyCanonicalGolden pins Key.AppendCanonical: the decimal form of an
// int64 key, the bytes of a string key. Keys are int64 or string; compound
// keys are not implemented, so they have no vector yet.
func TestKeyCanonicalGolden(t *testing.T) {
	tests := []struct {
		name string
		key  larder.Key
		hex  string
	}{
		{"int64 zero", larder.Int64Key(0), "30"},
		{"int64 small", larder.Int64Key(42), "3432"},
		{"int64 negative", larder.Int64Key(-1), "2d31"},
		{"int64 max", larder.Int64Key(math.MaxInt64), "39323233333732303336383534373735383037"},
		{"int64 min", larder.Int64Key(math.MinInt64), "2d39323233333732303336383534373735383038"},
		{"string empty", larder.StringKey(""), ""},
		{"string ascii", larder.StringKey("sku-42"), "736b752d3432"},
		{"string utf-8", larder.StringKey("héllo"), "68c3a96c6c6f"},
		{"string separators", larder.StringKey("a:b{c}"), "613a627b637d"},
		{"string binary", larder.StringKey("\x00\xff"), "00ff"},
		{"string of digits", larder.StringKey("42"), "3432"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := []byte("prefix")
			got := tt.key.AppendCanonical(prefix)
			if string(got[:len(prefix)]) != "prefix" {
				t.Fatalf("AppendCanonical changed the bytes before it: %q", got)
			}
			if h := hex.EncodeToString(got[len(prefix):]); h != tt.hex {
				t.Errorf("AppendCanonical(%#v) = %s, want %s", tt.key, h, tt.hex)
			}
			if h := hex.EncodeToString([]byte(tt.key.String())); h != tt.hex {
				t.Errorf("%#v.String() = %s, want %s", tt.key, h, tt.hex)
			}
		})
	}
}

// shardVectors are canonical keys (hex) and, for each count, the shard
// ShardOf puts them in. The count math.MaxUint32 exposes the whole 32-bit
// FNV-1a hash modulo 2^31-1. The store's bucket hash is the same function,
// pinned with the same keys in store/golden_test.go.
var shardVectors = []struct {
	key    string // hex of the canonical key
	counts map[int]int
}{
	{"", map[int]int{1: 0, 2: 1, 3: 1, 7: 2, 64: 5, 1000: 261, math.MaxInt32: 18652614}},
	{"30", map[int]int{1: 0, 2: 1, 3: 0, 7: 0, 64: 47, 1000: 63, math.MaxInt32: 890022063}},
	{"31", map[int]int{1: 0, 2: 0, 3: 1, 7: 2, 64: 28, 1000: 444, math.MaxInt32: 873244444}},
	{"3432", map[int]int{1: 0, 2: 1, 3: 2, 7: 6, 64: 3, 1000: 11, math.MaxInt32: 132351364}},
	{"2d31", map[int]int{1: 0, 2: 1, 3: 2, 7: 2, 64: 43, 1000: 803, math.MaxInt32: 348981803}},
	{"39323233333732303336383534373735383037", map[int]int{1: 0, 2: 1, 3: 1, 7: 4, 64: 43, 1000: 323, math.MaxInt32: 546809323}},
	{"736b752d3432", map[int]int{1: 0, 2: 1, 3: 2, 7: 0, 64: 19, 1000: 715, math.MaxInt32: 1203530068}},
	{"68c3a96c6c6f", map[int]int{1: 0, 2: 0, 3: 0, 7: 4, 64: 0, 1000: 0, math.MaxInt32: 1252296000}},
	{"00ff", map[int]int{1: 0, 2: 0, 3: 1, 7: 4, 64: 32, 1000: 248, math.MaxInt32: 1383581601}},
}

// TestShardOfGolden pins ShardOf: the shards of a sharded run are written
// by workers that may run different releases during an upgrade.
func TestShardOfGolden(t *testing.T) {
	for _, v := range shardVectors {
		key, err := hex.DecodeString(v.key)
		if err != nil {
			t.Fatal(err)
		}
		for count, want := range v.counts {
			if got := larder.ShardOf(key, count); got != want {
				t.Errorf("ShardOf(%q, %d) = %d, want %d", key, count, got, want)
			}
		}
	}
}

// goldenProject is a fixed project of every view kind, whose fingerprints
// TestFingerprintGolden pins. Do not change it: add views instead.
func goldenProject(t *testing.T) *larder.Project {
	t.Helper()
	w7d, err := larder.ParseWindow("7d")
	if err != nil {
		t.Fatal(err)
	}
	w1h, err := larder.ParseWindow("1h")
	if err != nil {
		t.Fatal(err)
	}
	p := &larder.Project{
		Name: "golden",
		Entities: []*larder.Entity{
			{Name: "user", Key: "user_id", KeyType: larder.TypeInt64},
			{Name: "item", Key: "item_id", KeyType: larder.TypeString},
		},
		Sources: []*larder.Source{{Name: "events", Path: "e", EventTime: "ts"}},
		Views: []*larder.View{
			{Name: "user_profile", Kind: larder.KindLatest, Entity: "user", Source: "events", Features: []larder.Feature{
				{Name: "age", Type: larder.TypeInt64}, {Name: "country", Type: larder.TypeString},
			}},
			{Name: "item_profile", Kind: larder.KindLatest, Entity: "item", Source: "events", Features: []larder.Feature{
				{Name: "price", Type: larder.TypeFloat64},
			}},
			// The same features on another entity's key type: another schema.
			{Name: "user_price", Kind: larder.KindLatest, Entity: "user", Source: "events", Features: []larder.Feature{
				{Name: "price", Type: larder.TypeFloat64},
			}},
			{Name: "everything", Kind: larder.KindLatest, Entity: "user", Source: "events", Features: []larder.Feature{
				{Name: "n", Type: larder.TypeInt64}, {Name: "x", Type: larder.TypeFloat64},
				{Name: "f", Type: larder.TypeFloat32}, {Name: "b", Type: larder.TypeBool},
				{Name: "s", Type: larder.TypeString}, {Name: "raw", Type: larder.TypeBytes},
				{Name: "emb", Type: larder.TypeFloat32Vector}, {Name: "ids", Type: larder.TypeInt64List},
				{Name: "tags", Type: larder.TypeStringList},
			}},
			{Name: "user_spend", Kind: larder.KindAggregate, Entity: "user", Source: "events",
				Aggregations: []larder.Aggregation{{Column: "price", Type: larder.TypeFloat64, Name: "spend",
					Functions: []larder.AggFunc{larder.AggCount, larder.AggSum, larder.AggMean},
					Windows:   []larder.Window{w1h, w7d}}}},
			{Name: "user_pred", Kind: larder.KindPrediction, Entity: "user",
				Prediction: &larder.Prediction{Model: "m.onnx", Inputs: []larder.RankerInput{{Ref: "user_spend:spend_sum_7d"}, {Ref: "user_profile:age"}}},
				Features:   []larder.Feature{{Name: "p_buy", Type: larder.TypeFloat32}}},
			{Name: "user_recs", Kind: larder.KindCandidates, Entity: "user", Source: "events",
				Candidates: &larder.Candidates{Entity: "item", ScoreColumn: "score"}},
		},
	}
	p.SetDefaults()
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestFingerprintGolden pins View.Fingerprint: a reader refuses a
// generation whose recorded fingerprint differs from its view's, so a
// changed fingerprint makes every stored generation unreadable at once.
func TestFingerprintGolden(t *testing.T) {
	p := goldenProject(t)
	want := map[string]string{
		"user_profile": "92cf162840fabb6b",
		"item_profile": "075a77b999aa689a",
		"user_price":   "d18c6d24dc9f4aa9",
		"everything":   "4b8bbf5fa4e3473b",
		"user_spend":   "5768049f5b977e87",
		"user_pred":    "8e512780f6ff1ade",
		"user_recs":    "9cb5bb163bdf3438",
	}
	for name, fp := range want {
		v := p.View(name)
		if v == nil {
			t.Fatalf("no view %s", name)
		}
		if got := v.Fingerprint(); got != fp {
			t.Errorf("view %s: Fingerprint() = %s, want %s", name, got, fp)
		}
	}
}
