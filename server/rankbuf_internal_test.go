package server

import (
	"cmp"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestTopOrder checks topOrder against a stable sort of every candidate by
// descending score: ties keep request order and NaN ranks last, for K
// below, at and above the number of candidates and past maxInsertTopK.
func TestTopOrder(t *testing.T) {
	nan := float32(math.NaN())
	rng := rand.New(rand.NewPCG(1, 2))
	cases := []struct {
		name   string
		scores []float32
	}{
		{"empty", nil},
		{"one", []float32{0.5}},
		{"ties", []float32{1, 2, 2, 1, 3, 2, 1, 3}},
		{"nan", []float32{nan, 1, nan, -1, float32(math.Inf(-1)), 0}},
		{"random", func() []float32 {
			s := make([]float32, 100)
			for i := range s {
				s[i] = float32(rng.IntN(20)) // many ties
			}
			return s
		}()},
	}
	for _, c := range cases {
		want := make([]int, len(c.scores))
		for i := range want {
			want[i] = i
		}
		slices.SortStableFunc(want, func(a, b int) int { return cmp.Compare(c.scores[b], c.scores[a]) })
		for _, k := range []int{0, 1, 3, 10, maxInsertTopK, maxInsertTopK + 1, len(c.scores), len(c.scores) + 5} {
			got := topOrder(make([]int, 2), c.scores, k)
			if w := want[:min(k, len(want))]; !slices.Equal(got, w) {
				t.Errorf("%s, k=%d: %v, want %v", c.name, k, got, w)
			}
		}
	}
}
