package demo

import (
	"fmt"
	"math/rand/v2"

	"github.com/larder-dev/larder"
)

// rankerInput is one input of the home_feed ranker: its reference as written
// in larder.yaml, and how to read it the way the server does (a stored
// value's Number, as float32).
type rankerInput struct {
	ref   string
	value func(u *userRow, it *itemRow, hour int) float32
}

// rankerInputs lists the inputs of the home_feed ranker in the order of
// larder.yaml; a test keeps the two in step.
var rankerInputs = []rankerInput{
	{"user_profile:is_premium", func(u *userRow, _ *itemRow, _ int) float32 { return boolInput(u.IsPremium) }},
	{"user_profile:avg_order_value", func(u *userRow, _ *itemRow, _ int) float32 { return float32(u.AvgOrderValue) }},
	{"user_profile:price_sensitivity", func(u *userRow, _ *itemRow, _ int) float32 { return u.PriceSensitivity }},
	{"user_profile:ctr_7d", func(u *userRow, _ *itemRow, _ int) float32 { return u.CTR7d }},
	{"user_profile:favorite_category_id", func(u *userRow, _ *itemRow, _ int) float32 { return float32(u.FavoriteCategory) }},
	{"item_profile:category_id", func(_ *userRow, it *itemRow, _ int) float32 { return float32(it.CategoryID) }},
	{"item_profile:price", func(_ *userRow, it *itemRow, _ int) float32 { return float32(it.Price) }},
	{"item_profile:discount", func(_ *userRow, it *itemRow, _ int) float32 { return it.Discount }},
	{"item_profile:rating", func(_ *userRow, it *itemRow, _ int) float32 { return it.Rating }},
	{"item_profile:popularity_7d", func(_ *userRow, it *itemRow, _ int) float32 { return it.Popularity7d }},
	{"item_profile:ctr_7d", func(_ *userRow, it *itemRow, _ int) float32 { return it.CTR7d }},
	{"request:hour_of_day", func(_ *userRow, _ *itemRow, hour int) float32 { return float32(hour) }},
}

func boolInput(b bool) float32 {
	if b {
		return 1
	}
	return 0
}

// RankerName is the name of the demo project's ranker.
const RankerName = "home_feed"

// RankerInputs returns the inputs of the home_feed ranker, in the order of
// larder.yaml and of the columns of TrainingSet. request:hour_of_day is the
// hour of the request in UTC, 0 to 23.
func (d *Dataset) RankerInputs() []string {
	names := make([]string, len(rankerInputs))
	for i, in := range rankerInputs {
		names[i] = in.ref
	}
	return names
}

// TrainingSet returns n labelled rows for the home_feed ranker, drawn with
// the given seed: x holds n rows of features values each, in the order of
// names (RankerInputs); y[i] is 1 when the user clicked and 0 otherwise.
//
// Each row is an impression as the events record them: a user drawn by
// activity, an item shown to them and an hour of day drawn by traffic. The
// values are those of the newest version of the user and the item, as the
// views hold them, converted the way the server converts them (bool as 0 or
// 1); the label is drawn from the ground truth. A non-positive n returns no
// rows.
func (d *Dataset) TrainingSet(n int, seed int64) (x []float32, y []float32, features int, names []string) {
	features, names = len(rankerInputs), d.RankerInputs()
	if n <= 0 {
		return nil, nil, features, names
	}
	x = make([]float32, n*features)
	y = make([]float32, n)
	d.pop.sample(n, seed, func(i int, u *user, it *item, hour int, z float64, clicked bool) {
		row := x[i*features : (i+1)*features]
		for j, in := range rankerInputs {
			row[j] = in.value(&u.row, &it.row, hour)
		}
		if clicked {
			y[i] = 1
		}
	})
	return x, y, features, names
}

// sample draws n impressions with seed and calls fn with each, its true
// logit and its label.
func (p *population) sample(n int, seed int64, fn func(i int, u *user, it *item, hour int, z float64, clicked bool)) {
	rng := rand.New(rand.NewPCG(uint64(seed), streamTraining))
	for i := range n {
		u := &p.users[p.sampleUser(rng)]
		it := &p.items[p.sampleItem(rng, u)]
		hour := p.sampleHour(rng)
		z := p.logit(u, it, hour)
		fn(i, u, it, hour, z, rng.Float64() < sigmoid(z))
	}
}

// ClickProbability returns the ground truth: the probability that the user
// clicks the item when it is shown at the given hour of day (UTC, 0 to 23).
// It returns an error wrapping larder.ErrNotFound for an unknown user or
// item, and a *larder.InvalidError for an hour out of range.
func (d *Dataset) ClickProbability(userID, itemID int64, hour int) (float64, error) {
	u, ok := d.user(userID)
	if !ok {
		return 0, fmt.Errorf("demo: user %d: %w", userID, larder.ErrNotFound)
	}
	it, ok := d.item(itemID)
	if !ok {
		return 0, fmt.Errorf("demo: item %d: %w", itemID, larder.ErrNotFound)
	}
	if hour < 0 || hour > 23 {
		return 0, larder.Invalidf("demo: hour of day %d is out of range (0 to 23)", hour)
	}
	return sigmoid(d.pop.logit(u, it, hour)), nil
}

func (d *Dataset) user(id int64) (*user, bool) {
	i := id - 1
	if i < 0 || i >= int64(len(d.pop.users)) {
		return nil, false
	}
	return &d.pop.users[i], true
}

func (d *Dataset) item(id int64) (*item, bool) {
	i := id - itemIDBase - 1
	if i < 0 || i >= int64(len(d.pop.items)) {
		return nil, false
	}
	return &d.pop.items[i], true
}

// SampleUsers returns n distinct user ids (all of them when n is larger
// than Users), the same for the same data set, for a demo to query.
func (d *Dataset) SampleUsers(n int) []int64 {
	return sampleKeys(d.pop.seed, 0, 1, len(d.pop.users), n)
}

// SampleItems returns n distinct item ids (all of them when n is larger
// than Items), the same for the same data set, for a demo to query or to
// rank as candidates.
func (d *Dataset) SampleItems(n int) []int64 {
	return sampleKeys(d.pop.seed, 1, itemIDBase+1, len(d.pop.items), n)
}

// sampleKeys returns n distinct keys of first, first+1, ... first+size-1.
func sampleKeys(seed, stream uint64, first int64, size, n int) []int64 {
	n = min(n, size)
	if n <= 0 {
		return nil
	}
	rng := rand.New(rand.NewPCG(seed, streamSample<<8|stream))
	perm := rng.Perm(size)
	keys := make([]int64, n)
	for i := range keys {
		keys[i] = first + int64(perm[i])
	}
	return keys
}
