package server

import (
	"context"
	"fmt"
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
	limits, c := &s.limits, s.serving()
	switch n := len(req.GetKeys()); {
	case n == 0:
		return nil, larder.Invalidf("keys: at least one entity key is required")
	case n > limits.MaxEntities:
		return nil, larder.Invalidf("keys: %d keys is more than the limit of %d per request (server.max_entities)", n, limits.MaxEntities)
	}
	switch n := len(req.GetFeatures()); {
	case n == 0:
		return nil, larder.Invalidf("features: at least one feature reference (view:feature or view:*) is required")
	case n > limits.MaxFeatures:
		return nil, larder.Invalidf("features: %d feature references is more than the limit of %d per request (server.max_features)", n, limits.MaxFeatures)
	}

	buf := getPool.Get().(*getBuffers)
	buf.reset()
	var entity *larder.Entity
	for i, ref := range req.GetFeatures() {
		if msg := checkName(ref, larder.MaxRefBytes); msg != "" {
			return nil, larder.Invalidf("features[%d]: %s", i, msg)
		}
		viewName, feature, ok := larder.SplitRef(ref)
		if !ok {
			return nil, larder.Invalidf("features[%d]: %s is not a feature reference: write view:feature or view:*", i, echo(ref))
		}
		v := c.project.View(viewName)
		if v == nil {
			return nil, larder.Invalidf("features[%d]: unknown view %s%s", i, echo(viewName), knownViews(c.project))
		}
		if entity == nil {
			entity = v.EntityDef()
		} else if v.EntityDef() != entity {
			return nil, larder.Invalidf("features[%d]: view %q is keyed by entity %s, but earlier features are keyed by %s; ask for one entity per request", i, viewName, v.Entity, entity.Name)
		}
		li := buf.lookup(v)
		if feature == "*" {
			for fi := range v.Features {
				buf.column(c.names[v], li, fi)
			}
			continue
		}
		fi := v.FeatureIndex(feature)
		if fi < 0 {
			return nil, larder.Invalidf("features[%d]: view %q has no feature %s%s", i, viewName, echo(feature), knownFeatures(v))
		}
		buf.column(c.names[v], li, fi)
	}
	if nk, nc := len(req.GetKeys()), len(buf.cols); nk*nc > limits.MaxRequestCells {
		return nil, fmt.Errorf("request %w: %d keys × %d columns is %d values, more than the limit of %d per request (server.max_request_cells); ask for at most %d keys of these columns per request",
			larder.ErrTooLarge, nk, nc, nk*nc, limits.MaxRequestCells, max(1, limits.MaxRequestCells/nc))
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
	if s.tracer != nil {
		traceGet(ctx, len(keys), lookups, len(buf.cols))
	}
	if err := s.store.Read(ctx, lookups); err != nil {
		return nil, err
	}
	resp, err := buildFeatures(req.GetKeys(), lookups, buf.cols, slices.Clone(buf.names), s.now(), &buf.size, limits.MaxResponseBytes)
	if err != nil {
		return nil, err
	}
	getPool.Put(buf)
	return resp, nil
}

// buildFeatures builds the response of GetFeatures from what lookups read
// for keys. Its messages are allocated in slabs, a few per response rather
// than several per value, and every null or missing value shares one empty
// Value: the response is only marshaled. It stops with an error wrapping
// larder.ErrTooLarge once the response's size, as size estimates it,
// passes maxBytes; size is a scratch of the caller's.
func buildFeatures(keys []*larderv1.EntityKey, lookups []*larder.Lookup, cols []column, names []string, now time.Time, size *sizeEstimate, maxBytes int) (*larderv1.GetFeaturesResponse, error) {
	nk, nc, nl := len(keys), len(cols), len(lookups)
	size.reset(lookups, cols, names)
	resp := &larderv1.GetFeaturesResponse{
		Features:    names,
		Rows:        make([]*larderv1.FeatureRow, nk),
		Generations: make([]*larderv1.ViewGeneration, nl),
	}
	gens := make([]larderv1.ViewGeneration, nl)
	for i, l := range lookups {
		gens[i] = larderv1.ViewGeneration{View: l.View.Name, Generation: l.Generation, Model: l.Model, TileTimeMicros: tileTime(l)}
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
		size.row(key)
		for li, l := range lookups {
			statuses[li] = statusToProto(l.View.Status(l.Found[ki], l.Rows[ki].EventTime, now))
			stamps[li] = nil
			if l.Found[ki] {
				t := l.Rows[ki].EventTime
				ts := &times[ki*nl+li]
				ts.Seconds, ts.Nanos = t.Unix(), int32(t.Nanosecond())
				stamps[li] = ts
				size.bytes += size.found[li]
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
					if size.variable[ci] {
						size.value(v)
					}
				}
			}
			row.Values[ci] = fv
		}
		resp.Rows[ki] = row
		if size.bytes > maxBytes {
			return nil, fmt.Errorf("response %w: its first %d of %d rows are about %d bytes, more than the limit of %d (server.max_response_bytes); ask for fewer keys or fewer columns per request",
				larder.ErrTooLarge, ki+1, nk, size.bytes, maxBytes)
		}
	}
	return resp, nil
}

// sizeEstimate adds up the encoded size of a GetFeatures response as it is
// built, from above: a value found counts with an event time of this era
// and, for an int64, the widest encoding. The values of variable size
// (strings, bytes, vectors, lists) count their payload as it is added; the
// others' size is known from their column.
type sizeEstimate struct {
	bytes int
	// perRow is the size of a row whose views hold no row for its key;
	// found adds, by lookup, the size of its columns' values when its view
	// holds one. variable tells, by column, whether a value's size depends
	// on its payload.
	perRow   int
	found    []int
	variable []bool
}

// The parts of the estimate: a field's tag and length (a varint of up to 5
// bytes, for 4 GiB); a FeatureValue not found (its tag and length, status,
// and empty value), and its event time when found; a row's framing and
// key (an int64 key of any value; a string key adds its length).
const (
	framing  = 1 + 5
	cellSize = 1 + 1 + 2 + 1 + 1
	timeSize = 1 + 1 + 1 + 5 + 1 + 5 // seconds until the year 3000, nanos
	keySize  = framing + 1 + 10
	rowSize  = framing + keySize
	nameSize = 1 + 2 // a name is shorter than 16 KiB
)

// reset starts the estimate of a response of cols, named names, read by
// lookups.
func (e *sizeEstimate) reset(lookups []*larder.Lookup, cols []column, names []string) {
	e.bytes, e.perRow = 0, rowSize
	e.found, e.variable = resize(e.found, len(lookups)), resize(e.variable, len(cols))
	clear(e.found)
	clear(e.variable)
	for _, n := range names {
		e.bytes += nameSize + len(n)
	}
	for _, l := range lookups {
		e.bytes += framing + nameSize + len(l.View.Name) + 11 + framing + len(l.Model)
	}
	for ci, c := range cols {
		e.perRow += cellSize
		found := &e.found[c.lookup]
		*found += timeSize
		switch lookups[c.lookup].View.Features[c.feature].Type {
		case larder.TypeInt64:
			*found += 1 + 10
		case larder.TypeFloat64:
			*found += 1 + 8
		case larder.TypeFloat32:
			*found += 1 + 4
		case larder.TypeBool:
			*found += 1 + 1
		default:
			// The lengths of the FeatureValue and the Value may take 5
			// bytes each, and the kind has a tag and a length of its own.
			*found += 4 + 4 + framing
			e.variable[ci] = true
		}
	}
}

// row counts one row with the values of fixed size, keyed by key.
func (e *sizeEstimate) row(key *larderv1.EntityKey) {
	e.bytes += e.perRow + len(key.GetStringValue())
}

// value counts the payload of v, a value of variable size.
func (e *sizeEstimate) value(v larder.Value) {
	switch v.Type() {
	case larder.TypeString:
		e.bytes += len(v.Str())
	case larder.TypeBytes:
		e.bytes += len(v.Bytes())
	case larder.TypeFloat32Vector:
		e.bytes += framing + 4*len(v.Vector())
	case larder.TypeInt64List:
		e.bytes += framing + 10*len(v.Int64List())
	case larder.TypeStringList:
		for _, s := range v.StringList() {
			e.bytes += framing + len(s)
		}
	}
}

// getBuffers are the per-request buffers of GetFeatures, pooled.
type getBuffers struct {
	lookups []larder.Lookup
	ptrs    []*larder.Lookup
	cols    []column
	names   []string
	keys    []larder.Key
	// seen tells, by lookup, which of its view's features are columns
	// already, so that a column asked for twice is one column.
	seen [][]bool
	size sizeEstimate
}

var getPool = sync.Pool{New: func() any { return new(getBuffers) }}

func (b *getBuffers) reset() {
	b.lookups, b.ptrs = b.lookups[:0], b.ptrs[:0]
	b.cols, b.keys = b.cols[:0], b.keys[:0]
	clear(b.names)
	b.names = b.names[:0]
	b.seen = b.seen[:0]
}

// column adds feature fi of lookup li as a column, named from names (the
// view's "view:feature" names), unless it is a column already.
func (b *getBuffers) column(names []string, li, fi int) {
	seen := b.seen[li]
	if seen[fi] {
		return
	}
	seen[fi] = true
	b.cols = append(b.cols, column{lookup: li, feature: fi})
	b.names = append(b.names, names[fi])
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
	if i < cap(b.seen) {
		b.seen = b.seen[:i+1]
		b.seen[i] = resize(b.seen[i], len(v.Features))
		clear(b.seen[i])
	} else {
		b.seen = append(b.seen, make([]bool, len(v.Features)))
	}
	return i
}
