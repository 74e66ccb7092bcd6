package larder

import (
	"math"
	"strings"
)

// Suggest returns the name among known closest to name, when it is close
// enough to be a misspelling of it, for a "did you mean" in a message about
// an unknown name; "" when none is. Case, '_' and '-' are not counted; a
// name of up to 4 letters may be one edit away, one of up to 8 two, a
// longer one a third of its letters (dwell_secs for dwell_seconds). Two
// letters swapped are one edit (tiel for tile).
func Suggest(name string, known []string) string {
	norm := func(s string) string {
		return strings.ToLower(strings.NewReplacer("_", "", "-", "").Replace(s))
	}
	best, bestDist := "", math.MaxInt
	for _, k := range known {
		if dist := editDistance(norm(name), norm(k)); dist < bestDist {
			best, bestDist = k, dist
		}
	}
	limit := 2
	switch n := len(norm(name)); {
	case n <= 4:
		limit = 1
	case n > 8:
		limit = n / 3
	}
	if bestDist > limit {
		return ""
	}
	return best
}

// editDistance returns the number of edits between a and b: letters
// inserted, deleted, replaced, or two next to each other swapped (the
// optimal string alignment distance).
func editDistance(a, b string) int {
	// The rows of the previous two letters of a, and of this one.
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
