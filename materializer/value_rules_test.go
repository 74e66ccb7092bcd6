package materializer_test

import (
	"context"
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/materializer"
	"github.com/larder-dev/larder/redistest"
	"github.com/larder-dev/larder/store"
)

// ruleRow is a source row of the value rules' tests: float64, float32,
// string and vector values, some of them NaN, infinite or large.
type ruleRow struct {
	UserID int64     `parquet:"user_id"`
	TS     time.Time `parquet:"ts,timestamp(millisecond)"`
	F64    float64   `parquet:"f64"`
	F32    float32   `parquet:"f32"`
	Bio    string    `parquet:"bio"`
	Emb    []float32 `parquet:"emb,list"`
}

var ruleFeatures = []larder.Feature{
	feature("f64", larder.TypeFloat64, "f64"), feature("f32", larder.TypeFloat32, "f32"),
	feature("bio", larder.TypeString, "bio"), feature("emb", larder.TypeFloat32Vector, "emb"),
}

// bigBio is a string of 1 MiB: over the default max_value_bytes.
var bigBio = strings.Repeat("x", 1<<20)

func ruleRows() []ruleRow {
	nan, inf := math.NaN(), math.Inf(1)
	return []ruleRow{
		{1, at(1), nan, 1.5, "a", []float32{1}},
		{2, at(2), inf, float32(-inf), "b", []float32{2}},
		{3, at(3), -inf, float32(nan), "c", []float32{3}},
		{4, at(4), 2.5, 0.25, bigBio, []float32{4}},
		{5, at(5), 3.5, 0.5, "e", []float32{5, float32(nan)}},
		{6, at(6), 4.5, 0.75, "f", []float32{6, 7}},
	}
}

// TestRedisValueRulesDefault materializes NaN, ±Inf and a 1 MiB string
// with the default rules: each is stored as null.
func TestRedisValueRulesDefault(t *testing.T) {
	client := redistest.Start(t).Client()
	dir := t.TempDir()
	writeParquet(t, filepath.Join(dir, "data", "a.parquet"), ruleRows())
	p := projectFor(t, dir, "data", larder.TypeInt64, ruleFeatures...)
	m := materializer.New(p, store.New(client, p.Name, store.Options{}), materializer.Options{Now: fixedClock(at(100))})
	if _, err := m.Run(context.Background(), "v"); err != nil {
		t.Fatal(err)
	}
	keys := []larder.Key{larder.Int64Key(1), larder.Int64Key(2), larder.Int64Key(3), larder.Int64Key(4), larder.Int64Key(5)}
	got, _ := readAll(t, client, p, keys)
	for _, c := range []struct {
		key     int64
		feature int
	}{{1, 0}, {2, 0}, {2, 1}, {3, 0}, {3, 1}, {4, 2}, {5, 3}} {
		if v := got[larder.Int64Key(c.key)].Values[c.feature]; !v.IsNull() {
			t.Errorf("user %d, feature %s: stored %.40s (%s), want null", c.key, ruleFeatures[c.feature].Name, v, v.Type())
		}
	}
}
