package demo

import (
	"math/rand/v2"
	"slices"
)

// CandidatesPerUser is how many candidate items the upstream recall step
// proposes per user in the candidates file.
const CandidatesPerUser = 50

// streamCandidates is the random stream of the candidates file, far from the
// event files' streams.
const streamCandidates uint64 = 1 << 32

// candidateRow is one row of the candidates file: an item proposed for a user
// by an upstream recall model, with its score.
type candidateRow struct {
	UserID      int64   `parquet:"user_id"`
	ItemID      int64   `parquet:"item_id"`
	Score       float32 `parquet:"score"`
	GeneratedAt int64   `parquet:"generated_at,timestamp(millisecond)"`
}

// candidates returns the candidate lists of every user, as a recall model
// upstream of larder would write them: items drawn the way the shop shows
// them (popular ones and ones of the categories the user likes), scored by
// a noisy estimate of the ground truth. Generated an hour before Now.
func (p *population) candidates() []candidateRow {
	rng := rand.New(rand.NewPCG(p.seed, streamCandidates))
	at := p.now - 3_600_000
	rows := make([]candidateRow, 0, len(p.users)*CandidatesPerUser)
	seen := make([]int, 0, CandidatesPerUser)
	for i := range p.users {
		u := &p.users[i]
		seen = seen[:0]
		for tries := 0; len(seen) < CandidatesPerUser && tries < 4*CandidatesPerUser; tries++ {
			j := p.sampleItem(rng, u)
			if slices.Contains(seen, j) {
				continue
			}
			seen = append(seen, j)
			it := &p.items[j]
			score := p.logit(u, it, 20) + 0.7*rng.NormFloat64()
			rows = append(rows, candidateRow{UserID: u.row.UserID, ItemID: it.row.ItemID, Score: float32(score), GeneratedAt: at})
		}
	}
	return rows
}
