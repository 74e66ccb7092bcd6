package materializer

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestDenseTableMatchesBruteForce folds random rows, some of whose keys are
// outside the table's range and some of whose times tie, into several
// tables in an order unlike the rows' read order, merges them, and checks
// every best row against a brute-force fold in read order.
func TestDenseTableMatchesBruteForce(t *testing.T) {
	tests := []struct {
		name       string
		lo         int64
		size       int
		keys       []int64 // the keys rows are drawn from
		from, to   int64   // the coarse clock's range
		times      int64   // event times are drawn from [from-times/4, from+times)
		tables     int
		outOfRange bool
	}{
		{"in range", 100, 50, span(100, 150), 0, 1e6, 1e6, 3, false},
		{"keys outside the range", 100, 50, append(span(90, 160), math.MinInt64, math.MaxInt64, -1), 0, 1e6, 1e6, 2, true},
		{"many ties", -20, 40, span(-20, 20), 0, 1e18, 8, 4, false},
		{"times before the clock", 0, 10, span(0, 10), 1e9, 2e9, 4e9, 2, false},
		{"coarse clock of every time", 0, 30, span(0, 30), math.MinInt64, math.MaxInt64, 1e15, 3, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(tt.size), 5))
			type row struct {
				key, t int64
				seq    uint64
			}
			var rows []row
			for g := range 20 {
				for r := range 200 {
					rows = append(rows, row{
						key: tt.keys[rng.IntN(len(tt.keys))],
						t:   tt.from - tt.times/4 + rng.Int64N(tt.times+tt.times/4),
						seq: uint64(makeRef(g, r)) + 1,
					})
				}
			}
			want := map[int64]bestRow{}
			for _, r := range rows {
				b, ok := want[r.key]
				if !ok || beats(r.t, rowRef(r.seq-1), b.t, b.ref) {
					want[r.key] = bestRow{t: r.t, ref: rowRef(r.seq - 1)}
				}
			}

			clock := newCoarseClock(tt.from, tt.to)
			tabs := make([]*denseTable, tt.tables)
			for i := range tabs {
				tabs[i] = newDenseTable(tt.lo, tt.size, clock)
			}
			// Row groups go to tables in turn, the last ones first.
			for i := len(rows) - 1; i >= 0; {
				g := rowRef(rows[i].seq - 1).group()
				j := i
				for j >= 0 && rowRef(rows[j].seq-1).group() == g {
					j--
				}
				d := tabs[g%len(tabs)]
				for _, r := range rows[j+1 : i+1] {
					d.fold(r.key, r.t, r.seq)
				}
				i = j
			}
			for _, d := range tabs[1:] {
				tabs[0].merge(d)
			}
			if over := tabs[0].over.table != nil; over != tt.outOfRange {
				t.Errorf("keys outside the range: %v, want %v", over, tt.outOfRange)
			}
			s := tabs[0].shard(0)
			if len(s.best) != len(want) {
				t.Fatalf("%d entities, want %d", len(s.best), len(want))
			}
			for i, k := range s.intKeys {
				if w := want[k]; s.best[i] != w {
					t.Errorf("key %d: best row %+v, want %+v", k, s.best[i], w)
				}
			}
		})
	}
}

func span(lo, hi int64) []int64 {
	var s []int64
	for k := lo; k < hi; k++ {
		s = append(s, k)
	}
	return s
}

// TestCoarseClockKeepsOrder checks that the coarse clock never orders two
// times the other way round.
func TestCoarseClockKeepsOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	clocks := []coarseClock{
		newCoarseClock(0, 1<<20),
		newCoarseClock(-5e17, 5e17),
		newCoarseClock(math.MinInt64, math.MaxInt64),
		newCoarseClock(1e9, 1e9),
	}
	for _, c := range clocks {
		for range 100_000 {
			a, b := int64(rng.Uint64()), int64(rng.Uint64())
			if rng.IntN(2) == 0 {
				a, b = c.from+rng.Int64N(1<<40), c.from+rng.Int64N(1<<40)
			}
			if a > b {
				a, b = b, a
			}
			if c.of(a) > c.of(b) {
				t.Fatalf("clock %+v: %d -> %d but %d -> %d", c, a, c.of(a), b, c.of(b))
			}
		}
	}
}
