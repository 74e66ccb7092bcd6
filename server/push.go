package server

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/larder-dev/larder"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
)

// errNoPush is the answer to Push when the store does not take pushed rows.
var errNoPush = status.Error(codes.Unimplemented,
	"Push: this server's store does not take pushed rows (it does not implement larder.PushStore); serve from the Redis store of larder serve")

// ingestServer implements larderv1.IngestServiceServer over a Service.
type ingestServer struct {
	larderv1.UnimplementedIngestServiceServer
	svc *Service
}

// Push writes rows into the live generation of a latest view, through the
// store's larder.PushStore. A row that alone is wrong is answered
// PUSH_RESULT_INVALID with the reason and the others are written; a
// request that is wrong as a whole is refused (see ingest.proto).
func (g *ingestServer) Push(ctx context.Context, req *larderv1.PushRequest) (*larderv1.PushResponse, error) {
	return g.svc.Push(ctx, req)
}

// Push is IngestService.Push, for callers in the same process.
func (s *Service) Push(ctx context.Context, req *larderv1.PushRequest) (*larderv1.PushResponse, error) {
	if s.pusher == nil {
		return nil, errNoPush
	}
	resp, err := s.push(ctx, req)
	return resp, toStatus(err)
}

func (s *Service) push(ctx context.Context, req *larderv1.PushRequest) (*larderv1.PushResponse, error) {
	v, err := s.pushView(req.GetView())
	if err != nil {
		return nil, err
	}
	rows := req.GetRows()
	limits := &s.limits
	switch n := len(rows); {
	case n == 0:
		return nil, larder.Invalidf("rows: at least one row is required")
	case n > limits.MaxEntities:
		return nil, larder.Invalidf("rows: %d rows is more than the limit of %d per request (server.max_entities)", n, limits.MaxEntities)
	}
	if nr, nf := len(rows), len(v.Features); nr*nf > limits.MaxRequestCells {
		return nil, fmt.Errorf("request %w: %d rows × %d features of view %q is %d values, more than the limit of %d per request (server.max_request_cells); push at most %d rows of this view per request",
			larder.ErrTooLarge, nr, nf, v.Name, nr*nf, limits.MaxRequestCells, max(1, limits.MaxRequestCells/max(1, nf)))
	}

	resp := &larderv1.PushResponse{Outcomes: make([]*larderv1.PushOutcome, len(rows))}
	outcomes := make([]larderv1.PushOutcome, len(rows))
	// The values of every row in one slab, and the rows the store is given
	// with the index each came from in the request.
	vals := make([]larder.Value, len(rows)*len(v.Features))
	valid := make([]larder.PushRow, 0, len(rows))
	from := make([]int, 0, len(rows))
	conv := pushConverter{view: v, entity: v.EntityDef(), now: s.now()}
	for i, r := range rows {
		resp.Outcomes[i] = &outcomes[i]
		row, reason := conv.row(r, i, vals[i*len(v.Features):(i+1)*len(v.Features):(i+1)*len(v.Features)])
		if reason != "" {
			outcomes[i] = larderv1.PushOutcome{Result: larderv1.PushResult_PUSH_RESULT_INVALID, Reason: reason}
			continue
		}
		valid = append(valid, row)
		from = append(from, i)
	}
	if len(valid) > 0 {
		got, err := s.pusher.Push(ctx, v, valid)
		if err != nil {
			return nil, err
		}
		if len(got) != len(valid) {
			return nil, fmt.Errorf("push %s: the store answered %d outcomes for %d rows", v.Name, len(got), len(valid))
		}
		for j, o := range got {
			outcomes[from[j]] = larderv1.PushOutcome{Result: pushResultToProto(o.Result), Reason: o.Reason}
		}
	}
	for i := range outcomes {
		switch outcomes[i].Result {
		case larderv1.PushResult_PUSH_RESULT_WRITTEN:
			resp.Written++
		case larderv1.PushResult_PUSH_RESULT_OLDER:
			resp.Older++
		default:
			resp.Invalid++
		}
	}
	s.metrics.rowsPushed(v.Name, int(resp.Written), int(resp.Older), int(resp.Invalid))
	return resp, nil
}

// pushView resolves the view of a Push request in the configuration
// served now: it must be a latest view.
func (s *Service) pushView(name string) (*larder.View, error) {
	project := s.serving().project
	if name == "" {
		return nil, larder.Invalidf("view: a view name is required%s", knownLatest(project))
	}
	if msg := checkName(name, larder.MaxNameBytes); msg != "" {
		return nil, larder.Invalidf("view: %s%s", msg, knownLatest(project))
	}
	v := project.View(name)
	if v == nil {
		return nil, larder.Invalidf("view: unknown view %s%s", echo(name), knownLatest(project))
	}
	if v.Kind != larder.KindLatest {
		return nil, larder.Invalidf("view: %q is not a latest view (its kind is %s); Push writes into latest views only%s", name, v.Kind, knownLatest(project))
	}
	return v, nil
}

// knownLatest lists the latest views of p, which Push takes.
func knownLatest(p *larder.Project) string {
	names := p.ViewNames(larder.KindLatest)
	if len(names) == 0 {
		return " (the project has no latest view)"
	}
	return " (latest views: " + strings.Join(names, ", ") + ")"
}

func pushResultToProto(r larder.PushResult) larderv1.PushResult {
	switch r {
	case larder.PushWritten:
		return larderv1.PushResult_PUSH_RESULT_WRITTEN
	case larder.PushOlder:
		return larderv1.PushResult_PUSH_RESULT_OLDER
	}
	return larderv1.PushResult_PUSH_RESULT_INVALID
}

// pushConverter converts the rows of one Push request for view.
type pushConverter struct {
	view   *larder.View
	entity *larder.Entity
	// now is the server's clock when the request came: an event time more
	// than larder.MaxEventSkew past it is refused.
	now time.Time
}

// row converts row i of a request into vals, which holds one value per
// feature of the view. It returns the reason the row is invalid, naming the
// field at fault ("rows[3].values[\"age\"]: ..."), or "".
func (c *pushConverter) row(r *larderv1.PushRow, i int, vals []larder.Value) (larder.PushRow, string) {
	key, err := checkKey(r.GetKey(), c.entity)
	if err != nil {
		return larder.PushRow{}, rowField(i, "key") + err.Error()
	}
	ts := r.GetEventTime()
	if ts == nil {
		return larder.PushRow{}, rowField(i, "event_time") + "required: the time the values were true, which write-if-newer compares"
	}
	if err := ts.CheckValid(); err != nil {
		return larder.PushRow{}, rowField(i, "event_time") + err.Error()
	}
	at := ts.AsTime()
	if err := larder.CheckEventTime(at, c.now, "the server's clock"); err != nil {
		return larder.PushRow{}, rowField(i, "event_time") + err.Error()
	}
	given := r.GetValues()
	found := 0
	for fi := range c.view.Features {
		f := &c.view.Features[fi]
		pv, ok := given[f.Name]
		if !ok {
			vals[fi] = larder.Null
			continue
		}
		found++
		x, reason := pushValue(pv, f.Type)
		if reason == "" {
			x, reason = c.rules(x, f)
		}
		if reason != "" {
			return larder.PushRow{}, rowField(i, "values["+strconv.Quote(f.Name)+"]") + reason
		}
		vals[fi] = x
	}
	if found < len(given) {
		return larder.PushRow{}, rowField(i, "values") + c.unknownFeature(given)
	}
	return larder.PushRow{Key: key, Row: larder.Row{EventTime: at, Values: vals}}, ""
}

// rowField starts the reason of row i's field.
func rowField(i int, field string) string {
	return "rows[" + strconv.Itoa(i) + "]." + field + ": "
}

// unknownFeature says which name of given the view does not have: the
// first in byte order, so that the reason does not change from call to
// call with the order of the map.
func (c *pushConverter) unknownFeature(given map[string]*larderv1.Value) string {
	first := ""
	for name := range given {
		if c.view.FeatureIndex(name) < 0 && (first == "" || name < first) {
			first = name
		}
	}
	if msg := checkName(first, larder.MaxNameBytes); msg != "" {
		return msg + knownFeatures(c.view)
	}
	return fmt.Sprintf("view %q has no feature %s%s", c.view.Name, echo(first), knownFeatures(c.view))
}

// rules applies the view's value rules to x, a value of feature f (see
// larder.View.ApplyValueRules).
func (c *pushConverter) rules(x larder.Value, f *larder.Feature) (larder.Value, string) {
	return c.view.ApplyValueRules(f, x)
}

// pushValue converts v into a value of a feature of type t. A Value with no
// kind is null. Kinds convert as ingest.proto says: the kind of t's name,
// and for float64 and float32 the other float kind and exact integers. It
// returns the reason v is refused, or "".
func pushValue(v *larderv1.Value, t larder.Type) (larder.Value, string) {
	switch k := v.GetKind().(type) {
	case nil:
		return larder.Null, ""
	case *larderv1.Value_Int64Value:
		n := k.Int64Value
		switch t {
		case larder.TypeInt64:
			return larder.Int64Value(n), ""
		case larder.TypeFloat64:
			if f := float64(n); exactInt(f, n) {
				return larder.Float64Value(f), ""
			}
			return larder.Null, fmt.Sprintf("got int64 value %d, which float64 does not hold exactly; send a float64 value", n)
		case larder.TypeFloat32:
			if f := float32(n); exactInt(float64(f), n) {
				return larder.Float32Value(f), ""
			}
			return larder.Null, fmt.Sprintf("got int64 value %d, which float32 does not hold exactly; send a float32 value", n)
		}
	case *larderv1.Value_Float64Value:
		switch t {
		case larder.TypeFloat64:
			return larder.Float64Value(k.Float64Value), ""
		case larder.TypeFloat32:
			f := float32(k.Float64Value)
			if math.IsInf(float64(f), 0) && !math.IsInf(k.Float64Value, 0) {
				return larder.Null, fmt.Sprintf("got float64 value %g, beyond the range of float32", k.Float64Value)
			}
			return larder.Float32Value(f), ""
		}
	case *larderv1.Value_Float32Value:
		switch t {
		case larder.TypeFloat32:
			return larder.Float32Value(k.Float32Value), ""
		case larder.TypeFloat64:
			return larder.Float64Value(float64(k.Float32Value)), ""
		}
	case *larderv1.Value_BoolValue:
		if t == larder.TypeBool {
			return larder.BoolValue(k.BoolValue), ""
		}
	case *larderv1.Value_StringValue:
		if t == larder.TypeString {
			if !utf8.ValidString(k.StringValue) {
				return larder.Null, "the string " + echo(k.StringValue) + " is not valid UTF-8"
			}
			return larder.StringValue(k.StringValue), ""
		}
	case *larderv1.Value_BytesValue:
		if t == larder.TypeBytes {
			// The codec copied the bytes out of gRPC's buffers: the value
			// may share them.
			return larder.BytesValueString(string(k.BytesValue)), ""
		}
	case *larderv1.Value_Float32VectorValue:
		if t == larder.TypeFloat32Vector {
			return larder.Float32VectorValue(nonNil(k.Float32VectorValue.GetValues())), ""
		}
	case *larderv1.Value_Int64ListValue:
		if t == larder.TypeInt64List {
			return larder.Int64ListValue(nonNil(k.Int64ListValue.GetValues())), ""
		}
	case *larderv1.Value_StringListValue:
		if t == larder.TypeStringList {
			list := nonNil(k.StringListValue.GetValues())
			for j, s := range list {
				if !utf8.ValidString(s) {
					return larder.Null, "element " + strconv.Itoa(j) + ", " + echo(s) + ", is not valid UTF-8"
				}
			}
			return larder.StringListValue(list), ""
		}
	}
	return larder.Null, "must be " + wantKind(t) + " (the feature is " + t.String() + "); got " + kindOf(v)
}

// nonNil returns s, or an empty slice for nil: an empty vector or list is
// a value, not null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// wantKind names the kinds a feature of type t takes, for a reason.
func wantKind(t larder.Type) string {
	switch t {
	case larder.TypeFloat64:
		return "a float64 or float32 value, or an int64 value that float64 holds exactly"
	case larder.TypeFloat32:
		return "a float32 or float64 value, or an int64 value that float32 holds exactly"
	}
	return article(t) + " value"
}
