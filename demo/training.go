package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/parquet-go/parquet-go"

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

// ImpressionsFile is where the demo writes its impressions (WriteImpressions),
// the spine of its training set, relative to the project's folder.
const ImpressionsFile = "data/impressions.parquet"

// The columns of the impressions file: the keys, the instant the item was
// shown, the ranker's request feature hour_of_day (the hour of shown_at in
// the demo's day, see clockHour) and the label.
const (
	ImpressionTime  = "shown_at"
	ImpressionLabel = "clicked"
)

// impressionRow is one row of the impressions file.
type impressionRow struct {
	UserID    int64 `parquet:"user_id"`
	ItemID    int64 `parquet:"item_id"`
	ShownAt   int64 `parquet:"shown_at,timestamp(millisecond)"`
	HourOfDay int64 `parquet:"hour_of_day"`
	Clicked   int64 `parquet:"clicked"`
}

// WriteImpressions writes n impressions drawn with seed to path, a Parquet
// file: for each, a user drawn by activity, an item shown to them, an
// instant during the day before the data set's end (at an hour drawn by
// traffic), and whether the user clicked, drawn from the ground truth. It
// is the spine of the demo's training set: larder export adds the ranker's
// inputs as of each impression's instant. A non-positive n writes an empty
// file.
func (d *Dataset) WriteImpressions(ctx context.Context, path string, n int, seed int64) error {
	rows := make([]impressionRow, max(n, 0))
	// The demo's day before the one Now falls in (see clockHour): every
	// impression is before Now, at its drawn hour.
	dayStart := d.pop.midnight() - day
	rng := rand.New(rand.NewPCG(uint64(seed), streamImpressions))
	d.pop.sample(len(rows), seed, func(i int, u *user, it *item, hour int, _ float64, clicked bool) {
		r := &rows[i]
		r.UserID, r.ItemID, r.HourOfDay = u.row.UserID, it.row.ItemID, int64(hour)
		r.ShownAt = dayStart + int64(hour)*hourMillis + rng.Int64N(hourMillis)
		if clicked {
			r.Clicked = 1
		}
	})
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return writeParquet(ctx, path, rows, func(int) {})
}

// hourMillis is an hour in milliseconds.
const hourMillis = int64(time.Hour / time.Millisecond)

// ReadTrainingSet reads a training set that larder export wrote: the
// float32 columns named (such as RankerInputs, for an export with --ranker)
// as x, a row of len(names) values per spine row, and the int64 or float
// column label as y.
func ReadTrainingSet(path string, names []string, label string) (x, y []float32, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	pf, err := parquet.OpenFile(f, st.Size())
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	// The column of each leaf: an input's index, len(names) for the label,
	// -1 for the others.
	leaves := pf.Schema().Columns()
	want := make([]int, len(leaves))
	found := make([]bool, len(names)+1)
	for c, leaf := range leaves {
		want[c] = -1
		if len(leaf) != 1 {
			continue
		}
		if i := slices.Index(names, leaf[0]); i >= 0 {
			want[c], found[i] = i, true
		} else if leaf[0] == label {
			want[c], found[len(names)] = len(names), true
		}
	}
	for i, ok := range found {
		if !ok {
			name := label
			if i < len(names) {
				name = names[i]
			}
			return nil, nil, fmt.Errorf("%s has no column %q", path, name)
		}
	}
	n := pf.NumRows()
	x, y = make([]float32, 0, n*int64(len(names))), make([]float32, 0, n)
	r := parquet.NewReader(pf)
	defer r.Close()
	rows := make([]parquet.Row, 256)
	vals := make([]float32, len(names)+1)
	for {
		k, err := r.ReadRows(rows)
		for _, row := range rows[:k] {
			for _, v := range row {
				c := want[v.Column()]
				if c < 0 {
					continue
				}
				switch v.Kind() {
				case parquet.Float:
					vals[c] = v.Float()
				case parquet.Double:
					vals[c] = float32(v.Double())
				case parquet.Int64:
					vals[c] = float32(v.Int64())
				case parquet.Int32:
					vals[c] = float32(v.Int32())
				case parquet.Boolean:
					vals[c] = boolInput(v.Boolean())
				default:
					vals[c] = float32(math.NaN())
				}
			}
			x = append(x, vals[:len(names)]...)
			y = append(y, vals[len(names)])
		}
		if errors.Is(err, io.EOF) {
			return x, y, nil
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", path, err)
		}
	}
}
