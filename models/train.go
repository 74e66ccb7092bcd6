package models

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
)

// TrainConfig configures Train. The zero value is a valid configuration: it
// trains a logistic regression with the defaults given below.
type TrainConfig struct {
	// Hidden is the width of the hidden ReLU layer; 0 trains a logistic
	// regression (no hidden layer).
	Hidden int
	// Epochs is the number of passes over the data; 0 means 100.
	Epochs int
	// BatchSize is the number of rows per Adam step; 0 means 32. A batch
	// size of at least the row count is full-batch gradient descent.
	BatchSize int
	// LearningRate is Adam's step size; 0 means 0.01.
	LearningRate float64
	// L2 is the L2 penalty on the weights (not the biases); 0 means none.
	L2 float64
	// Seed seeds the initial weights and the order of the rows in each
	// epoch: the same data, config and seed give the same Net.
	Seed uint64
}

func (c TrainConfig) withDefaults() (TrainConfig, error) {
	switch {
	case c.Hidden < 0:
		return c, fmt.Errorf("hidden width %d is negative", c.Hidden)
	case c.Epochs < 0:
		return c, fmt.Errorf("epochs %d is negative", c.Epochs)
	case c.BatchSize < 0:
		return c, fmt.Errorf("batch size %d is negative", c.BatchSize)
	case c.LearningRate < 0 || math.IsNaN(c.LearningRate) || math.IsInf(c.LearningRate, 0):
		return c, fmt.Errorf("learning rate %v is not a positive number", c.LearningRate)
	case c.L2 < 0 || math.IsNaN(c.L2) || math.IsInf(c.L2, 0):
		return c, fmt.Errorf("L2 penalty %v is not a non-negative number", c.L2)
	}
	if c.Epochs == 0 {
		c.Epochs = 100
	}
	if c.BatchSize == 0 {
		c.BatchSize = 32
	}
	if c.LearningRate == 0 {
		c.LearningRate = 0.01
	}
	return c, nil
}

// Net is a trained (or random) feed-forward network over raw features: dense
// layers with ReLU between them and a sigmoid on each output. A trained Net is
// a binary classifier with one output; a random one may have several (see
// NewRandomNet). A trained Net carries its feature standardisation, so
// Forward and the exported ONNX graph take raw feature values.
//
// The standardisation stays a separate step, (x - mean) * invScale, rather
// than being folded into the first layer's weights: folding moves a large
// mean into the bias, and in float32 the cancellation between x·W and the
// bias then costs more precision than the model has (features such as
// counts or timestamps have means far from zero).
//
// A Net is not modified after it is built and is safe for concurrent use.
type Net struct {
	features       int
	mean, invScale []float32 // nil: no standardisation
	layers         []dense
}

// dense is y = x·W + b, with W stored in×out row-major.
type dense struct {
	in, out int
	w, b    []float32
}

// Features returns the number of input features.
func (n *Net) Features() int { return n.features }

// Outputs returns the number of outputs per row: 1 for a trained Net.
func (n *Net) Outputs() int { return n.layers[len(n.layers)-1].out }

// Hidden returns the widths of the hidden layers: empty for a logistic
// regression.
func (n *Net) Hidden() []int {
	h := make([]int, 0, len(n.layers)-1)
	for _, l := range n.layers[:len(n.layers)-1] {
		h = append(h, l.out)
	}
	return h
}

// Forward computes the net's outputs for rows rows of raw features in x
// (row-major, rows × Features values) into out[:rows*Outputs], row by row:
// the same arithmetic as the exported graph, except that dot products
// accumulate in float64 (each layer's output is rounded to float32, as
// between graph nodes). It panics if x or out is too short, as copy into a
// short slice would be a silent bug.
func (n *Net) Forward(x []float32, rows int, out []float32) {
	k := n.Outputs()
	if len(x) < rows*n.features || len(out) < rows*k {
		panic(fmt.Sprintf("models: Net.Forward: %d rows need %d values and %d outputs, got %d and %d", rows, rows*n.features, rows*k, len(x), len(out)))
	}
	width := 0
	for _, l := range n.layers {
		width = max(width, l.out)
	}
	a, b := make([]float32, width), make([]float32, width)
	std := make([]float32, n.features)
	for r := 0; r < rows; r++ {
		in := x[r*n.features : (r+1)*n.features]
		if n.mean != nil {
			// Two float32 operations, rounded as the graph's Sub and Mul are.
			for f, v := range in {
				d := v - n.mean[f]
				std[f] = d * n.invScale[f]
			}
			in = std
		}
		for li, l := range n.layers {
			z := b[:l.out]
			for o := 0; o < l.out; o++ {
				s := float64(l.b[o])
				for i := 0; i < l.in; i++ {
					s += float64(in[i]) * float64(l.w[i*l.out+o])
				}
				if li < len(n.layers)-1 {
					s = max(s, 0)
				}
				z[o] = float32(s)
			}
			in = z
			a, b = b, a
		}
		for o, z := range in[:k] {
			out[r*k+o] = float32(sigmoid(float64(z)))
		}
	}
}

func sigmoid(z float64) float64 { return 1 / (1 + math.Exp(-z)) }

// Train fits a binary classifier to len(y) rows of features x (row-major,
// len(y) × features values) and labels y, each 0 or 1: a logistic
// regression when cfg.Hidden is 0, else an MLP with one hidden ReLU layer of
// that width. It minimises the mean log loss (plus cfg.L2) with Adam, in
// float64, over features standardised with the training rows' mean and
// standard deviation, which the Net keeps (see Net). Training is
// deterministic given the data, cfg and cfg.Seed.
//
// An error is returned if there are no rows, the sizes disagree, a label is
// not 0 or 1, a feature value is not finite, or cfg has a negative field.
func Train(x, y []float32, features int, cfg TrainConfig) (*Net, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("models: train: %w", err)
	}
	n := len(y)
	switch {
	case features <= 0:
		return nil, fmt.Errorf("models: train: %d features, want at least 1", features)
	case n == 0:
		return nil, errors.New("models: train: no rows")
	case len(x) != n*features:
		return nil, fmt.Errorf("models: train: x has %d values, want rows × features = %d × %d = %d", len(x), n, features, n*features)
	}
	for i, v := range y {
		if v != 0 && v != 1 {
			return nil, fmt.Errorf("models: train: label %d is %v, want 0 or 1", i, v)
		}
	}
	for i, v := range x {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil, fmt.Errorf("models: train: row %d feature %d is %v, want a finite number", i/features, i%features, v)
		}
	}

	// Standardise in float64; a constant feature keeps scale 1.
	mean, scale := make([]float64, features), make([]float64, features)
	for r := 0; r < n; r++ {
		for f := 0; f < features; f++ {
			mean[f] += float64(x[r*features+f])
		}
	}
	for f := range mean {
		mean[f] /= float64(n)
	}
	for r := 0; r < n; r++ {
		for f := 0; f < features; f++ {
			d := float64(x[r*features+f]) - mean[f]
			scale[f] += d * d
		}
	}
	for f := range scale {
		scale[f] = math.Sqrt(scale[f] / float64(n))
		if scale[f] < 1e-12 {
			scale[f] = 1
		}
	}
	// Train on exactly the float32 values the graph will compute.
	mean32, inv32 := make([]float32, features), make([]float32, features)
	for f := range mean {
		mean32[f] = float32(mean[f])
		inv32[f] = float32(1 / scale[f])
	}
	xs := make([]float64, len(x))
	for r := 0; r < n; r++ {
		for f := 0; f < features; f++ {
			d := x[r*features+f] - mean32[f]
			xs[r*features+f] = float64(d * inv32[f])
		}
	}

	widths := []int{features, 1}
	if cfg.Hidden > 0 {
		widths = []int{features, cfg.Hidden, 1}
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x6c61726465722d6d)) // "larder-m"
	t := newTrainer(widths, rng, cfg.Hidden == 0)
	t.fit(xs, y, cfg, rng)

	net := t.net(features)
	net.mean, net.invScale = mean32, inv32
	return net, nil
}

// NewRandomMLP returns a net with one output, the given hidden layer widths
// (none for a logistic regression) and random He-initialised weights, for
// benchmarks of models heavier than the example ranker: NewRandomNet with
// one output. The same arguments give the same net. An error is returned if
// a width is not positive.
func NewRandomMLP(features int, hidden []int, seed uint64) (*Net, error) {
	return NewRandomNet(features, hidden, 1, seed)
}

// NewRandomNet returns a net with the given hidden layer widths, outputs
// sigmoid outputs per row and random He-initialised weights, for tests and
// benchmarks of multi-output models such as those of prediction views. The
// same arguments give the same net. An error is returned if features,
// outputs or a width is not positive.
func NewRandomNet(features int, hidden []int, outputs int, seed uint64) (*Net, error) {
	if features <= 0 {
		return nil, fmt.Errorf("models: random MLP: %d features, want at least 1", features)
	}
	if outputs <= 0 {
		return nil, fmt.Errorf("models: random MLP: %d outputs, want at least 1", outputs)
	}
	widths := append([]int{features}, hidden...)
	for i, w := range hidden {
		if w <= 0 {
			return nil, fmt.Errorf("models: random MLP: hidden layer %d has width %d, want at least 1", i, w)
		}
	}
	widths = append(widths, outputs)
	rng := rand.New(rand.NewPCG(seed, 0x6c61726465722d72)) // "larder-r"
	t := newTrainer(widths, rng, false)
	for i := range t.layers {
		for j := range t.layers[i].b {
			t.layers[i].b[j] = 0.1 * rng.NormFloat64()
		}
	}
	return t.net(features), nil
}

// trainer holds float64 parameters and Adam state while training.
type trainer struct {
	layers []layer64
}

type layer64 struct {
	in, out      int
	w, b         []float64
	gw, gb       []float64 // gradient of the current batch
	mw, mb       []float64 // Adam first moments
	vw, vb       []float64 // Adam second moments
	z, a, dz     []float64 // per-row pre-activation, activation, dLoss/dz
	inputForGrad []float64 // the layer's input for the current row
}

func newTrainer(widths []int, rng *rand.Rand, zeroInit bool) *trainer {
	t := &trainer{}
	for i := 0; i+1 < len(widths); i++ {
		in, out := widths[i], widths[i+1]
		l := layer64{
			in: in, out: out,
			w: make([]float64, in*out), b: make([]float64, out),
			gw: make([]float64, in*out), gb: make([]float64, out),
			mw: make([]float64, in*out), mb: make([]float64, out),
			vw: make([]float64, in*out), vb: make([]float64, out),
			z: make([]float64, out), a: make([]float64, out), dz: make([]float64, out),
		}
		if !zeroInit {
			// He initialisation suits the ReLU layers; the output layer
			// uses the same scale, which is fine at these depths.
			sd := math.Sqrt(2 / float64(in))
			for j := range l.w {
				l.w[j] = sd * rng.NormFloat64()
			}
		}
		t.layers = append(t.layers, l)
	}
	return t
}

func (t *trainer) net(features int) *Net {
	n := &Net{features: features}
	for _, l := range t.layers {
		d := dense{in: l.in, out: l.out, w: make([]float32, len(l.w)), b: make([]float32, len(l.b))}
		for i, v := range l.w {
			d.w[i] = float32(v)
		}
		for i, v := range l.b {
			d.b[i] = float32(v)
		}
		n.layers = append(n.layers, d)
	}
	return n
}

// forward runs one standardised row through the layers and returns the
// output logit.
func (t *trainer) forward(row []float64) float64 {
	in := row
	last := len(t.layers) - 1
	for li := range t.layers {
		l := &t.layers[li]
		l.inputForGrad = in
		for o := 0; o < l.out; o++ {
			s := l.b[o]
			for i := 0; i < l.in; i++ {
				s += in[i] * l.w[i*l.out+o]
			}
			l.z[o] = s
			if li < last {
				l.a[o] = max(s, 0)
			} else {
				l.a[o] = s
			}
		}
		in = l.a
	}
	return t.layers[last].a[0]
}

// backward adds the gradient of the row's log loss to the batch gradient,
// given dLoss/dlogit.
func (t *trainer) backward(dlogit float64) {
	last := len(t.layers) - 1
	t.layers[last].dz[0] = dlogit
	for li := last; li >= 0; li-- {
		l := &t.layers[li]
		for o := 0; o < l.out; o++ {
			l.gb[o] += l.dz[o]
			for i := 0; i < l.in; i++ {
				l.gw[i*l.out+o] += l.inputForGrad[i] * l.dz[o]
			}
		}
		if li == 0 {
			break
		}
		prev := &t.layers[li-1]
		for i := 0; i < l.in; i++ {
			if prev.z[i] <= 0 {
				prev.dz[i] = 0
				continue
			}
			s := 0.0
			for o := 0; o < l.out; o++ {
				s += l.w[i*l.out+o] * l.dz[o]
			}
			prev.dz[i] = s
		}
	}
}

func (t *trainer) fit(xs []float64, y []float32, cfg TrainConfig, rng *rand.Rand) {
	const beta1, beta2, eps = 0.9, 0.999, 1e-8
	features := t.layers[0].in
	n := len(y)
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	step := 0
	for epoch := 0; epoch < cfg.Epochs; epoch++ {
		rng.Shuffle(n, func(i, j int) { order[i], order[j] = order[j], order[i] })
		for start := 0; start < n; start += cfg.BatchSize {
			batch := order[start:min(start+cfg.BatchSize, n)]
			for li := range t.layers {
				clear(t.layers[li].gw)
				clear(t.layers[li].gb)
			}
			for _, r := range batch {
				logit := t.forward(xs[r*features : (r+1)*features])
				t.backward(sigmoid(logit) - float64(y[r]))
			}
			step++
			inv := 1 / float64(len(batch))
			c1 := 1 - math.Pow(beta1, float64(step))
			c2 := 1 - math.Pow(beta2, float64(step))
			for li := range t.layers {
				l := &t.layers[li]
				adam := func(p, g, m, v []float64, l2 float64) {
					for i := range p {
						gi := g[i]*inv + l2*p[i]
						m[i] = beta1*m[i] + (1-beta1)*gi
						v[i] = beta2*v[i] + (1-beta2)*gi*gi
						p[i] -= cfg.LearningRate * (m[i] / c1) / (math.Sqrt(v[i]/c2) + eps)
					}
				}
				adam(l.w, l.gw, l.mw, l.vw, cfg.L2)
				adam(l.b, l.gb, l.mb, l.vb, 0)
			}
		}
	}
}
