package server

import (
	"context"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protowire"

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
	// A response served over gRPC is encoded by the server's codec, which
	// gives its memory back to the pool; one returned to a caller in the
	// same process is left to the collector.
	served := grpc.ServerTransportStreamFromContext(ctx) != nil
	resp, err := buildFeatures(len(keys), lookups, buf.cols, buf.names, s.now(), &buf.size, limits.MaxResponseBytes, served)
	if err != nil {
		return nil, err
	}
	getPool.Put(buf)
	return resp, nil
}

// buildFeatures builds the response of GetFeatures from what lookups read
// for nk keys: one column per element of cols, named names, and one status
// and event time per key and lookup. The arrays of every column of a type
// are slices of one array of that type, and the messages and arrays come
// from a pooled featuresBuf, so a response costs a few allocations at most
// whatever its number of values; with served, the server's codec gives
// that memory back once it has encoded the response (see releaseFeatures).
// It stops with an error wrapping larder.ErrTooLarge once the response's
// size, as size estimates it, passes maxBytes; size is a scratch of the
// caller's.
func buildFeatures(nk int, lookups []*larder.Lookup, cols []column, names []string, now time.Time, size *sizeEstimate, maxBytes int, served bool) (*larderv1.GetFeaturesResponse, error) {
	nc, nl := len(cols), len(lookups)
	size.reset(lookups, cols, names)
	if size.bytes > maxBytes {
		return nil, tooLarge(0, nk, size.bytes, maxBytes)
	}
	b := featuresPool.Get().(*featuresBuf)
	b.gens, b.genPtrs = resize(b.gens, nl), resize(b.genPtrs, nl)
	b.views, b.viewPtrs = resize(b.views, nl), resize(b.viewPtrs, nl)
	b.columns, b.colPtrs = resize(b.columns, nc), resize(b.colPtrs, nc)
	b.resp = larderv1.GetFeaturesResponse{RowCount: int32(nk), Generations: b.genPtrs, Columns: b.colPtrs, Views: b.viewPtrs}
	resp, gens, views := &b.resp, b.gens, b.views
	statuses, times := zeroed(&b.statuses, nl*nk), zeroed(&b.times, nl*nk)
	for i, l := range lookups {
		gens[i] = larderv1.ViewGeneration{View: l.View.Name, Generation: l.Generation, Model: l.Model, TileTimeMicros: tileTime(l)}
		resp.Generations[i] = &gens[i]
		views[i] = larderv1.ViewRows{View: l.View.Name, Statuses: statuses[i*nk : (i+1)*nk : (i+1)*nk], EventTimeMicros: times[i*nk : (i+1)*nk : (i+1)*nk]}
		resp.Views[i] = &views[i]
	}

	// The typed arrays, one allocation per type, cut into one slice of nk
	// elements per column.
	var count [larder.TypeStringList + 1]int
	types := size.types
	for ci, c := range cols {
		t := lookups[c.lookup].View.Features[c.feature].Type
		types[ci] = t
		if int(t) < len(count) {
			count[t]++
		}
	}
	i64 := zeroed(&b.i64, count[larder.TypeInt64]*nk)
	f64 := zeroed(&b.f64, count[larder.TypeFloat64]*nk)
	f32 := zeroed(&b.f32, count[larder.TypeFloat32]*nk)
	bools := zeroed(&b.bools, count[larder.TypeBool]*nk)
	strs := zeroed(&b.strs, count[larder.TypeString]*nk)
	byts := zeroed(&b.byts, count[larder.TypeBytes]*nk)
	lens := zeroed(&b.lens, (count[larder.TypeFloat32Vector]+count[larder.TypeInt64List]+count[larder.TypeStringList])*nk)
	columns := b.columns
	for ci, c := range cols {
		col := &columns[ci]
		*col = larderv1.FeatureColumn{Name: names[ci], Type: typeToProto(types[ci]), View: int32(c.lookup)}
		switch types[ci] {
		case larder.TypeInt64:
			col.Int64Values = cut(&i64, nk)
		case larder.TypeFloat64:
			col.Float64Values = cut(&f64, nk)
		case larder.TypeFloat32:
			col.Float32Values = cut(&f32, nk)
		case larder.TypeBool:
			col.BoolValues = cut(&bools, nk)
		case larder.TypeString:
			col.StringValues = cut(&strs, nk)
		case larder.TypeBytes:
			col.BytesValues = cut(&byts, nk)
		case larder.TypeFloat32Vector, larder.TypeInt64List, larder.TypeStringList:
			col.ListLengths = cut(&lens, nk)
		}
		resp.Columns[ci] = col
	}

	for ki := range nk {
		size.bytes += size.perRow
		for li, l := range lookups {
			found := l.Found[ki]
			statuses[li*nk+ki] = statusToProto(l.View.Status(found, l.Rows[ki].EventTime, now))
			if found {
				t := l.Rows[ki].EventTime.UnixMicro()
				times[li*nk+ki] = t
				size.bytes += protowire.SizeVarint(uint64(t)) - 1
			}
		}
		for ci, c := range cols {
			l, col := lookups[c.lookup], &columns[ci]
			var v larder.Value
			if l.Found[ki] {
				v = l.Rows[ki].Values[c.feature]
			}
			if v.IsNull() {
				col.NullRows = append(col.NullRows, int32(ki))
				size.bytes += protowire.SizeVarint(uint64(ki))
				continue
			}
			switch types[ci] {
			case larder.TypeInt64:
				n := v.Int64()
				col.Int64Values[ki] = n
				size.bytes += protowire.SizeVarint(uint64(n)) - 1
			case larder.TypeFloat64:
				col.Float64Values[ki] = v.Float64()
			case larder.TypeFloat32:
				col.Float32Values[ki] = v.Float32()
			case larder.TypeBool:
				col.BoolValues[ki] = v.Bool()
			case larder.TypeString:
				col.StringValues[ki] = v.Str()
				size.bytes += sizeBytes(len(v.Str()))
			case larder.TypeBytes:
				col.BytesValues[ki] = v.Bytes()
				size.bytes += sizeBytes(len(col.BytesValues[ki]))
			case larder.TypeFloat32Vector:
				vec := v.Vector()
				col.ListLengths[ki] = int32(len(vec))
				col.Float32VectorValues = append(col.Float32VectorValues, vec...)
				size.bytes += protowire.SizeVarint(uint64(len(vec))) - 1 + 4*len(vec)
			case larder.TypeInt64List:
				list := v.Int64List()
				col.ListLengths[ki] = int32(len(list))
				col.Int64ListValues = append(col.Int64ListValues, list...)
				size.bytes += protowire.SizeVarint(uint64(len(list))) - 1
				for _, n := range list {
					size.bytes += protowire.SizeVarint(uint64(n))
				}
			case larder.TypeStringList:
				list := v.StringList()
				col.ListLengths[ki] = int32(len(list))
				col.StringListValues = append(col.StringListValues, list...)
				size.bytes += protowire.SizeVarint(uint64(len(list))) - 1
				for _, s := range list {
					size.bytes += 1 + protowire.SizeVarint(uint64(len(s))) + len(s)
				}
			}
		}
		if size.bytes > maxBytes {
			b.release()
			return nil, tooLarge(ki+1, nk, size.bytes, maxBytes)
		}
	}
	if served {
		b.track()
	}
	return resp, nil
}

// tooLarge is the error of a response past maxBytes once its first rows
// of nk are built.
func tooLarge(rows, nk, bytes, maxBytes int) error {
	return fmt.Errorf("response %w: its first %d of %d rows are about %d bytes, more than the limit of %d (server.max_response_bytes); ask for fewer keys or fewer columns per request",
		larder.ErrTooLarge, rows, nk, bytes, maxBytes)
}

// featuresBuf is a GetFeatures response with the memory its messages and
// arrays are cut from: a response of 20 columns is about 7 KB of messages,
// most of what a GetFeatures allocates. It is pooled: buildFeatures takes
// one, and the server's codec gives it back once the response is encoded
// (see releaseFeatures), so that the next response reuses its memory.
type featuresBuf struct {
	resp     larderv1.GetFeaturesResponse
	gens     []larderv1.ViewGeneration
	genPtrs  []*larderv1.ViewGeneration
	views    []larderv1.ViewRows
	viewPtrs []*larderv1.ViewRows
	columns  []larderv1.FeatureColumn
	colPtrs  []*larderv1.FeatureColumn
	statuses []larderv1.FeatureStatus
	times    []int64
	i64      []int64
	f64      []float64
	f32      []float32
	bools    []bool
	strs     []string
	byts     [][]byte
	lens     []int32
}

var featuresPool = sync.Pool{New: func() any { return new(featuresBuf) }}

// unsent holds the featuresBuf of each response built to be served over
// gRPC and not yet encoded, so that releaseFeatures knows which responses
// it may give back.
var unsent struct {
	sync.Mutex
	m map[*larderv1.GetFeaturesResponse]*featuresBuf
}

// maxUnsent bounds the responses unsent remembers, should some never be
// encoded: far more than are ever between their handler and their encoding
// at once. The responses it forgets are left to the collector.
const maxUnsent = 4096

// track records b's response as built and not yet encoded.
func (b *featuresBuf) track() {
	unsent.Lock()
	if len(unsent.m) >= maxUnsent {
		clear(unsent.m)
	}
	if unsent.m == nil {
		unsent.m = make(map[*larderv1.GetFeaturesResponse]*featuresBuf)
	}
	unsent.m[&b.resp] = b
	unsent.Unlock()
}

// releaseFeatures gives the memory of resp back to the pool once resp is
// encoded, when buildFeatures built it; nothing may use resp afterwards.
func releaseFeatures(resp *larderv1.GetFeaturesResponse) {
	unsent.Lock()
	b := unsent.m[resp]
	delete(unsent.m, resp)
	unsent.Unlock()
	if b != nil {
		b.release()
	}
}

// release puts b back in the pool, dropping what its response refers to
// (names, values, strings and bytes of rows) so that pooled buffers keep
// no rows alive.
func (b *featuresBuf) release() {
	b.resp = larderv1.GetFeaturesResponse{}
	clear(b.gens)
	clear(b.views)
	clear(b.columns)
	clear(b.genPtrs)
	clear(b.viewPtrs)
	clear(b.colPtrs)
	clear(b.strs)
	clear(b.byts)
	featuresPool.Put(b)
}

// zeroed returns *s resized to n elements, all zero, reusing its capacity.
func zeroed[T any](s *[]T, n int) []T {
	*s = resize(*s, n)
	clear(*s)
	return *s
}

// cut returns the first n elements of *s, and leaves *s after them.
func cut[T any](s *[]T, n int) []T {
	c := (*s)[:n:n]
	*s = (*s)[n:]
	return c
}

// sizeBytes is the encoded size of a string or bytes element of n bytes,
// less the two bytes an empty one takes (its tag and length).
func sizeBytes(n int) int { return protowire.SizeVarint(uint64(n)) - 1 + n }

// sizeEstimate adds up the encoded size of a GetFeatures response as it is
// built, from above. The header (names, views, generations, the framing of
// every array) is counted first, with the widest framing; perRow then
// counts each row as if every value were null or zero and every key were
// missing, and the build adds what a value or an event time takes beyond
// that, exactly.
type sizeEstimate struct {
	bytes  int
	perRow int
	// types is a scratch of buildFeatures: the type of each column.
	types []larder.Type
}

// The parts of the estimate: a message's or a packed array's tag and
// length (a varint of up to 3 bytes, for 2 MiB), and a name's (a name is
// shorter than 16 KiB).
const (
	framing  = 1 + 3
	nameSize = 1 + 2
)

// reset starts the estimate of a response of cols, named names, read by
// lookups.
func (e *sizeEstimate) reset(lookups []*larder.Lookup, cols []column, names []string) {
	e.bytes, e.perRow = 1+5, 0 // row_count
	e.types = resize(e.types, len(cols))
	for _, l := range lookups {
		// A generation, and the view's statuses and event times (a
		// status and a missing time take a byte each).
		e.bytes += framing + nameSize + len(l.View.Name) + 11 + nameSize + len(l.Model)
		e.bytes += framing + nameSize + len(l.View.Name) + 2*framing
		e.perRow += 2
	}
	for ci, c := range cols {
		// The column's header (name, type, view), its null rows and its
		// array.
		e.bytes += framing + nameSize + len(names[ci]) + 2 + 3 + 2*framing
		switch lookups[c.lookup].View.Features[c.feature].Type {
		case larder.TypeFloat64:
			e.perRow += 8
		case larder.TypeFloat32:
			e.perRow += 4
		case larder.TypeString, larder.TypeBytes:
			// Not packed: a tag, and an empty length.
			e.perRow += 2
		case larder.TypeFloat32Vector, larder.TypeInt64List, larder.TypeStringList:
			// A row's length, and the array of elements.
			e.bytes += framing
			e.perRow++
		default:
			// A zero int64, a bool.
			e.perRow++
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
