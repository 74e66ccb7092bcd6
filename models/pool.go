package models

import (
	"fmt"
	"math/bits"
	"runtime"
	"sync"

	"github.com/larder-dev/larder/models/internal/ort"
)

const (
	// minClass and maxClass bound the pooled buffer sizes: 1<<class rows.
	// Larger requests get a run of their own that is released afterwards.
	minClass = 3  // 8 rows
	maxClass = 14 // 16384 rows
)

// runPool keeps idle runs per size class (rows rounded up to a power of two).
//
// It is a bounded free list rather than a sync.Pool because a run holds C
// memory (ORT values and run options): a sync.Pool drops entries at garbage
// collection without telling anyone, which would leak them, or would need
// finalizers that could fire after the ORT environment is gone. Here every
// run is destroyed either by put (when the class is full) or by drain.
type runPool struct {
	features int
	outputs  int // K, values per row of the output
	outShape []int64
	maxIdle  int

	mu   sync.Mutex
	idle [maxClass + 1][]*run
}

func (p *runPool) init(features, outputs int, outShape []int64) {
	p.features = features
	p.outputs = outputs
	p.outShape = outShape
	p.maxIdle = max(4, 2*runtime.GOMAXPROCS(0))
}

// run is the per-call state of one Score: input and output buffers, ORT
// tensors over them, and run options that can be terminated.
type run struct {
	class int       // size class, or -1 for a one-off run
	x, y  []float32 // input (rows × features) and output (rows × outputs) buffers
	rows  int       // rows the tensors are shaped for; 0 = no tensors yet

	in, out         *ort.Tensor[float32]
	inputs, outputs []ort.Value // len 1 each, reused on every run

	opts       *ort.RunOptions
	terminate  func()        // bound once, so AfterFunc gets no new closure
	terminated chan struct{} // terminate's done signal
}

func sizeClass(n int) int {
	c := bits.Len(uint(n - 1))
	return max(c, minClass)
}

// get returns a run whose tensors are shaped for n rows.
func (p *runPool) get(n int) (*run, error) {
	class := sizeClass(n)
	var r *run
	if class <= maxClass {
		p.mu.Lock()
		if k := len(p.idle[class]); k > 0 {
			r = p.idle[class][k-1]
			p.idle[class][k-1] = nil
			p.idle[class] = p.idle[class][:k-1]
		}
		p.mu.Unlock()
	}
	if r == nil {
		rows := n
		if class <= maxClass {
			rows = 1 << class
		} else {
			class = -1
		}
		var err error
		if r, err = newRun(class, rows, p.features, p.outputs); err != nil {
			return nil, err
		}
	}
	if err := r.shape(n, p.features, p.outputs, p.outShape); err != nil {
		r.destroy()
		return nil, err
	}
	return r, nil
}

// put returns r to its class, or destroys it if the class is full.
func (p *runPool) put(r *run) {
	if r.class >= 0 {
		p.mu.Lock()
		if p.idle[r.class] == nil {
			p.idle[r.class] = make([]*run, 0, p.maxIdle)
		}
		if len(p.idle[r.class]) < p.maxIdle {
			p.idle[r.class] = append(p.idle[r.class], r)
			r = nil
		}
		p.mu.Unlock()
	}
	if r != nil {
		r.destroy()
	}
}

// discard destroys r instead of pooling it.
func (p *runPool) discard(r *run) { r.destroy() }

// drain destroys every idle run.
func (p *runPool) drain() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.idle {
		for _, r := range p.idle[c] {
			r.destroy()
		}
		p.idle[c] = nil
	}
}

func newRun(class, rows, features, outputs int) (*run, error) {
	opts, err := ort.NewRunOptions()
	if err != nil {
		return nil, fmt.Errorf("run options: %w", err)
	}
	r := &run{
		class:      class,
		x:          make([]float32, rows*features),
		y:          make([]float32, rows*outputs),
		inputs:     make([]ort.Value, 1),
		outputs:    make([]ort.Value, 1),
		opts:       opts,
		terminated: make(chan struct{}, 1),
	}
	r.terminate = func() {
		// An error here only means the run is not stopped early.
		_ = r.opts.Terminate()
		r.terminated <- struct{}{}
	}
	return r, nil
}

// shape makes r's tensors [n, features] and [n, outputs] (or [n]) over the
// first rows of its buffers, unless they already are.
func (r *run) shape(n, features, outputs int, outShape []int64) error {
	if r.rows == n {
		return nil
	}
	r.destroyTensors()
	in, err := ort.NewTensor(ort.NewShape(int64(n), int64(features)), r.x[:n*features])
	if err != nil {
		return fmt.Errorf("input tensor: %w", err)
	}
	shape := ort.NewShape(int64(n))
	if len(outShape) == 2 {
		shape = ort.NewShape(int64(n), int64(outputs))
	}
	out, err := ort.NewTensor(shape, r.y[:n*outputs])
	if err != nil {
		in.Destroy()
		return fmt.Errorf("output tensor: %w", err)
	}
	r.in, r.out, r.rows = in, out, n
	r.inputs[0], r.outputs[0] = in, out
	return nil
}

func (r *run) destroyTensors() {
	if r.in != nil {
		r.in.Destroy()
		r.out.Destroy()
	}
	r.in, r.out, r.rows = nil, nil, 0
	r.inputs[0], r.outputs[0] = nil, nil
}

func (r *run) destroy() {
	r.destroyTensors()
	if r.opts != nil {
		r.opts.Destroy()
		r.opts = nil
	}
}
