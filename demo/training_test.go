package demo

import (
	"errors"
	"math"
	"path/filepath"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/larder-dev/larder"
)

func newDataset(tb testing.TB, opts Options) *Dataset {
	tb.Helper()
	d, err := New(opts)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	return d
}

func TestTrainingSet(t *testing.T) {
	d := newDataset(t, Options{Seed: 5, Now: testNow})
	const n = 2000
	x, y, features, names := d.TrainingSet(n, 7)
	if features != len(names) || !slices.Equal(names, d.RankerInputs()) {
		t.Fatalf("TrainingSet gave %d features named %v; want RankerInputs() %v", features, names, d.RankerInputs())
	}
	if len(x) != n*features || len(y) != n {
		t.Fatalf("TrainingSet(%d) gave %d values and %d labels, want %d and %d", n, len(x), len(y), n*features, n)
	}
	for i, label := range y {
		if label != 0 && label != 1 {
			t.Fatalf("label %d = %v, want 0 or 1", i, label)
		}
	}

	hour := slices.Index(names, "request:hour_of_day")
	for i := range n {
		if h := x[i*features+hour]; h < 0 || h > 23 || h != float32(int(h)) {
			t.Fatalf("row %d has hour_of_day %v", i, h)
		}
	}

	tests := []struct {
		name     string
		n        int
		seed     int64
		wantSame bool
	}{
		{"same seed", n, 7, true},
		{"other seed", n, 8, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x2, y2, _, _ := d.TrainingSet(tt.n, tt.seed)
			if same := slices.Equal(x, x2) && slices.Equal(y, y2); same != tt.wantSame {
				t.Errorf("rows equal to the first set = %v, want %v", same, tt.wantSame)
			}
		})
	}
	t.Run("empty", func(t *testing.T) {
		x, y, features, names := d.TrainingSet(0, 1)
		if x != nil || y != nil || features != len(rankerInputs) || len(names) != features {
			t.Errorf("TrainingSet(0) = %d values, %d labels, %d features, %v", len(x), len(y), features, names)
		}
	})
}

// TestLabelsLearnable checks that the ground truth is a clear signal, and
// that the ranker's inputs carry it: a logistic regression on them ranks
// clicks well above chance.
func TestLabelsLearnable(t *testing.T) {
	d := newDataset(t, Options{Seed: 11, Now: testNow})
	const n, train = 60_000, 50_000
	x, y, features, names := d.TrainingSet(n, 3)
	logits := make([]float64, n)
	d.pop.sample(n, 3, func(i int, _ *user, _ *item, _ int, z float64, _ bool) { logits[i] = z })

	var clicks float64
	for _, v := range y {
		clicks += float64(v)
	}
	rate := clicks / n
	if rate < 0.03 || rate > 0.4 {
		t.Errorf("click rate %.3f, want a realistic 3%% to 40%%", rate)
	}

	// Mean label by decile of the true logit.
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool { return logits[order[a]] < logits[order[b]] })
	decile := func(k int) float64 {
		var s float64
		for _, i := range order[k*n/10 : (k+1)*n/10] {
			s += float64(y[i])
		}
		return s / float64(n/10)
	}
	bottom, top := decile(0), decile(9)
	t.Logf("click rate %.3f; bottom decile of the true logit %.3f, top decile %.3f", rate, bottom, top)
	if top < 0.3 || bottom > 0.03 || top < 10*bottom {
		t.Errorf("mean label %.3f in the bottom decile of the true logit, %.3f in the top; want a clear signal (top >= 0.3, bottom <= 0.03)", bottom, top)
	}

	// A logistic regression on the standardized inputs, plus "the item is
	// in the user's favourite category" (a function of two inputs, which a
	// small network learns by itself).
	fav, cat := slices.Index(names, "user_profile:favorite_category_id"), slices.Index(names, "item_profile:category_id")
	cols := features + 1
	feats := make([]float64, n*cols)
	for i := range n {
		row := x[i*features : (i+1)*features]
		for j, v := range row {
			feats[i*cols+j] = float64(v)
		}
		if row[fav] == row[cat] {
			feats[i*cols+features] = 1
		}
	}
	standardize(feats, cols, train)
	w := fitLogistic(feats[:train*cols], y[:train], cols, 300, 0.5)

	scores := make([]float64, n-train)
	truth := make([]float64, n-train)
	for i := train; i < n; i++ {
		s := w[cols]
		for j := range cols {
			s += w[j] * feats[i*cols+j]
		}
		scores[i-train], truth[i-train] = s, logits[i]
	}
	aucModel, aucTruth := auc(scores, y[train:]), auc(truth, y[train:])
	t.Logf("held-out AUC: logistic regression on the ranker inputs %.3f, the true logit %.3f", aucModel, aucTruth)
	if aucModel < 0.7 {
		t.Errorf("a logistic regression on the ranker inputs reaches AUC %.3f, want at least 0.7", aucModel)
	}
}

// standardize scales every column of rows (cols wide) to mean 0 and
// standard deviation 1, with the statistics of the first train rows.
func standardize(rows []float64, cols, train int) {
	for j := range cols {
		var sum, sq float64
		for i := range train {
			v := rows[i*cols+j]
			sum += v
			sq += v * v
		}
		mean := sum / float64(train)
		sd := math.Sqrt(max(sq/float64(train)-mean*mean, 1e-12))
		for i := 0; i < len(rows)/cols; i++ {
			rows[i*cols+j] = (rows[i*cols+j] - mean) / sd
		}
	}
}

// fitLogistic fits weights (cols of them, then the bias) by full-batch
// gradient descent.
func fitLogistic(rows []float64, y []float32, cols, steps int, lr float64) []float64 {
	n := len(y)
	w := make([]float64, cols+1)
	grad := make([]float64, cols+1)
	for range steps {
		clear(grad)
		for i := range n {
			row := rows[i*cols : (i+1)*cols]
			z := w[cols]
			for j, v := range row {
				z += w[j] * v
			}
			e := sigmoid(z) - float64(y[i])
			for j, v := range row {
				grad[j] += e * v
			}
			grad[cols] += e
		}
		for j := range w {
			w[j] -= lr * grad[j] / float64(n)
		}
	}
	return w
}

// auc returns the area under the ROC curve of scores for labels.
func auc(scores []float64, labels []float32) float64 {
	order := make([]int, len(scores))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool { return scores[order[a]] < scores[order[b]] })
	var pos, neg, rankSum float64
	for r, i := range order {
		if labels[i] == 1 {
			pos++
			rankSum += float64(r + 1)
		} else {
			neg++
		}
	}
	return (rankSum - pos*(pos+1)/2) / (pos * neg)
}

func TestSampleKeys(t *testing.T) {
	d := newDataset(t, Options{Users: 300, Items: 40, Seed: 3, Now: testNow})
	tests := []struct {
		name   string
		sample func(int) []int64
		n      int
		want   int
		lo, hi int64
	}{
		{"users", d.SampleUsers, 10, 10, 1, 300},
		{"all users", d.SampleUsers, 1000, 300, 1, 300},
		{"no users", d.SampleUsers, 0, 0, 1, 300},
		{"negative", d.SampleUsers, -4, 0, 1, 300},
		{"items", d.SampleItems, 7, 7, itemIDBase + 1, itemIDBase + 40},
		{"all items", d.SampleItems, 41, 40, itemIDBase + 1, itemIDBase + 40},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys := tt.sample(tt.n)
			if len(keys) != tt.want {
				t.Fatalf("got %d keys, want %d", len(keys), tt.want)
			}
			seen := map[int64]bool{}
			for _, k := range keys {
				if k < tt.lo || k > tt.hi || seen[k] {
					t.Fatalf("keys %v: want distinct keys in [%d, %d]", keys, tt.lo, tt.hi)
				}
				seen[k] = true
			}
			if again := tt.sample(tt.n); !slices.Equal(keys, again) {
				t.Errorf("second call gave %v, want the same %v", again, keys)
			}
		})
	}

	users, items := d.SampleUsers(3), d.SampleItems(3)
	for _, u := range users {
		for _, it := range items {
			if _, err := d.ClickProbability(u, it, 12); err != nil {
				t.Errorf("ClickProbability of sampled keys: %v", err)
			}
		}
	}
}

func TestClickProbability(t *testing.T) {
	d := newDataset(t, Options{Users: 50, Items: 20, Seed: 3, Now: testNow})
	user, item := d.SampleUsers(1)[0], d.SampleItems(1)[0]
	tests := []struct {
		name        string
		user, item  int64
		hour        int
		notFound    bool
		wantInvalid bool
	}{
		{"known", user, item, 20, false, false},
		{"unknown user", 51, item, 20, true, false},
		{"user zero", 0, item, 20, true, false},
		{"user key as item", user, user, 20, true, false},
		{"hour too large", user, item, 24, false, true},
		{"negative hour", user, item, -1, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := d.ClickProbability(tt.user, tt.item, tt.hour)
			switch {
			case tt.notFound:
				if !errors.Is(err, larder.ErrNotFound) {
					t.Errorf("error = %v, want ErrNotFound", err)
				}
			case tt.wantInvalid:
				if !larder.IsInvalid(err) {
					t.Errorf("error = %v, want an InvalidError", err)
				}
			case err != nil:
				t.Errorf("error = %v", err)
			case p <= 0 || p >= 1:
				t.Errorf("probability = %v", p)
			}
		})
	}
}

// TestSameDataAnyTimeOfDay checks that two data sets ending at different
// times of day are the same data shifted in time: the events and the
// impressions, relative to Now, and so the training set larder export makes
// of them and the model trained on it.
func TestSameDataAnyTimeOfDay(t *testing.T) {
	opts := Options{Users: 200, Items: 50, Events: 20_000, Seed: 9}
	a := newDataset(t, Options{Users: opts.Users, Items: opts.Items, Events: opts.Events, Seed: opts.Seed, Now: testNow})
	later := testNow.Add(7*time.Hour + 13*time.Minute + 5*time.Second)
	b := newDataset(t, Options{Users: opts.Users, Items: opts.Items, Events: opts.Events, Seed: opts.Seed, Now: later})
	shift := later.UnixMilli() - testNow.UnixMilli()

	pa, pb := eventParts(a.Events, a.Now.UnixMilli()), eventParts(b.Events, b.Now.UnixMilli())
	if len(pa) != len(pb) {
		t.Fatalf("%d and %d event files", len(pa), len(pb))
	}
	for k := range pa {
		ea, eb := a.pop.events(pa[k]), b.pop.events(pb[k])
		if len(ea) != len(eb) {
			t.Fatalf("file %d: %d and %d events", k, len(ea), len(eb))
		}
		for i := range ea {
			x, y := ea[i], eb[i]
			y.EventTime -= shift
			if compareEvents(x, y) != 0 {
				t.Fatalf("file %d, event %d: %+v and, shifted back, %+v", k, i, x, y)
			}
		}
	}

	dir := t.TempDir()
	ia, ib := filepath.Join(dir, "a.parquet"), filepath.Join(dir, "b.parquet")
	if err := a.WriteImpressions(t.Context(), ia, 500, 3); err != nil {
		t.Fatal(err)
	}
	if err := b.WriteImpressions(t.Context(), ib, 500, 3); err != nil {
		t.Fatal(err)
	}
	ra, rb := readRows[impressionRow](t, ia), readRows[impressionRow](t, ib)
	for i := range ra {
		y := rb[i]
		y.ShownAt -= shift
		if ra[i] != y {
			t.Fatalf("impression %d: %+v and, shifted back, %+v", i, ra[i], y)
		}
		if ra[i].ShownAt >= testNow.UnixMilli() {
			t.Errorf("impression %d at %d, not before Now", i, ra[i].ShownAt)
		}
	}
}
