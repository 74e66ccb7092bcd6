package server

import (
	"context"
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/larder-dev/larder"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
)

// column is one resolved "view:feature" of a GetFeatures request.
type column struct {
	lookup  int
	feature int
}

// GetFeatures returns the requested features of every key, in request order.
func (s *Service) GetFeatures(ctx context.Context, req *larderv1.GetFeaturesRequest) (*larderv1.GetFeaturesResponse, error) {
	resp, err := s.getFeatures(ctx, req)
	return resp, toStatus(err)
}

func (s *Service) getFeatures(ctx context.Context, req *larderv1.GetFeaturesRequest) (*larderv1.GetFeaturesResponse, error) {
	switch n := len(req.GetKeys()); {
	case n == 0:
		return nil, larder.Invalidf("keys: at least one entity key is required")
	case n > s.project.Server.MaxEntities:
		return nil, larder.Invalidf("keys: %d keys is more than the limit of %d per request (server.max_entities)", n, s.project.Server.MaxEntities)
	}
	if len(req.GetFeatures()) == 0 {
		return nil, larder.Invalidf("features: at least one feature reference (view:feature or view:*) is required")
	}

	buf := getPool.Get().(*getBuffers)
	buf.reset()
	var entity *larder.Entity
	for i, ref := range req.GetFeatures() {
		viewName, feature, ok := larder.SplitRef(ref)
		if !ok {
			return nil, larder.Invalidf("features[%d]: %q is not a feature reference: write view:feature or view:*", i, ref)
		}
		v := s.project.View(viewName)
		if v == nil {
			return nil, larder.Invalidf("features[%d]: unknown view %q%s", i, viewName, knownViews(s.project))
		}
		if entity == nil {
			entity = v.EntityDef()
		} else if v.EntityDef() != entity {
			return nil, larder.Invalidf("features[%d]: view %q is keyed by entity %s, but earlier features are keyed by %s; ask for one entity per request", i, viewName, v.Entity, entity.Name)
		}
		li := buf.lookup(v)
		if feature == "*" {
			for fi := range v.Features {
				buf.cols = append(buf.cols, column{lookup: li, feature: fi})
			}
			buf.names = append(buf.names, s.names[v]...)
			continue
		}
		fi := v.FeatureIndex(feature)
		if fi < 0 {
			return nil, larder.Invalidf("features[%d]: view %q has no feature %q%s", i, viewName, feature, knownFeatures(v))
		}
		buf.cols = append(buf.cols, column{lookup: li, feature: fi})
		buf.names = append(buf.names, ref)
	}

	buf.keys = resize(buf.keys, len(req.GetKeys()))
	keys := buf.keys
	for i, k := range req.GetKeys() {
		key, err := keyFromProto(k, entity, "keys", i)
		if err != nil {
			return nil, err
		}
		keys[i] = key
	}
	lookups := buf.ptrs
	for _, l := range lookups {
		l.Keys = keys
	}
	if err := s.store.Read(ctx, lookups); err != nil {
		return nil, err
	}
	resp := buildFeatures(req.GetKeys(), lookups, buf.cols, slices.Clone(buf.names), s.now())
	getPool.Put(buf)
	return resp, nil
}

// buildFeatures builds the response of GetFeatures from what lookups read
// for keys. Its messages are allocated in slabs, a few per response rather
// than several per value, and every null or missing value shares one empty
// Value: the response is only marshaled.
func buildFeatures(keys []*larderv1.EntityKey, lookups []*larder.Lookup, cols []column, names []string, now time.Time) *larderv1.GetFeaturesResponse {
	nk, nc, nl := len(keys), len(cols), len(lookups)
	resp := &larderv1.GetFeaturesResponse{
		Features:    names,
		Rows:        make([]*larderv1.FeatureRow, nk),
		Generations: make([]*larderv1.ViewGeneration, nl),
	}
	gens := make([]larderv1.ViewGeneration, nl)
	for i, l := range lookups {
		gens[i] = larderv1.ViewGeneration{View: l.View.Name, Generation: l.Generation, Model: l.Model}
		resp.Generations[i] = &gens[i]
	}
	slab := newValueSlab(lookups, cols, nk)
	empty := &larderv1.Value{}
	// One timestamp and status per (key, view): every value of a view's row
	// shares them.
	times := make([]timestamppb.Timestamp, nk*nl)
	var statusBuf [8]larderv1.FeatureStatus
	var timeBuf [8]*timestamppb.Timestamp
	statuses, stamps := statusBuf[:0], timeBuf[:0]
	if nl > len(statusBuf) {
		statuses, stamps = make([]larderv1.FeatureStatus, 0, nl), make([]*timestamppb.Timestamp, 0, nl)
	}
	statuses, stamps = statuses[:nl], stamps[:nl]
	rows := make([]larderv1.FeatureRow, nk)
	values := make([]larderv1.FeatureValue, nk*nc)
	ptrs := make([]*larderv1.FeatureValue, nk*nc)
	for ki, key := range keys {
		for li, l := range lookups {
			statuses[li] = statusToProto(l.View.Status(l.Found[ki], l.Rows[ki].EventTime, now))
			stamps[li] = nil
			if l.Found[ki] {
				t := l.Rows[ki].EventTime
				ts := &times[ki*nl+li]
				ts.Seconds, ts.Nanos = t.Unix(), int32(t.Nanosecond())
				stamps[li] = ts
			}
		}
		row := &rows[ki]
		row.Key, row.Values = key, ptrs[ki*nc:(ki+1)*nc:(ki+1)*nc]
		for ci, c := range cols {
			fv := &values[ki*nc+ci]
			l := lookups[c.lookup]
			fv.Status, fv.EventTime, fv.Value = statuses[c.lookup], stamps[c.lookup], empty
			if l.Found[ki] {
				if v := l.Rows[ki].Values[c.feature]; !v.IsNull() {
					fv.Value = slab.value(v)
				}
			}
			row.Values[ci] = fv
		}
		resp.Rows[ki] = row
	}
	return resp
}

// getBuffers are the per-request buffers of GetFeatures, pooled.
type getBuffers struct {
	lookups []larder.Lookup
	ptrs    []*larder.Lookup
	cols    []column
	names   []string
	keys    []larder.Key
}

var getPool = sync.Pool{New: func() any { return new(getBuffers) }}

func (b *getBuffers) reset() {
	b.lookups, b.ptrs = b.lookups[:0], b.ptrs[:0]
	b.cols, b.keys = b.cols[:0], b.keys[:0]
	clear(b.names)
	b.names = b.names[:0]
}

// lookup returns the index of v's lookup, adding one when v has none yet.
// A lookup keeps the capacity of its rows from earlier requests.
func (b *getBuffers) lookup(v *larder.View) int {
	for i, l := range b.ptrs {
		if l.View == v {
			return i
		}
	}
	i := len(b.ptrs)
	if i < cap(b.lookups) {
		b.lookups = b.lookups[:i+1]
		l := &b.lookups[i]
		*l = larder.Lookup{View: v, Found: l.Found, Rows: l.Rows}
	} else {
		b.lookups = append(b.lookups, larder.Lookup{View: v})
		// The lookups moved: point at their new places.
		for j := range b.ptrs {
			b.ptrs[j] = &b.lookups[j]
		}
	}
	b.ptrs = append(b.ptrs, &b.lookups[i])
	return i
}
