package console

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/client"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
)

// page is what page.html renders: every field is text, formatted here.
type page struct {
	Project string
	Now     string
	Viewer  string // "ops (admin)", or empty without authentication
	Open    bool   // no authentication: anyone who reaches the page sees it
	// ViewsError says why the views could not be listed.
	ViewsError string
	Views      []viewRow
	Streams    bool // a view is fed by a stream: show the lag column
	Lookup     lookup
	Rankers    []rankerRow
	Paths      bool // the viewer may see the models' file paths
}

type viewRow struct {
	Name, Kind, Entity string
	Generation, Rows   string
	AsOf, Age, MaxAge  string
	Stale              bool
	Schedule, NextRun  string
	LastOK             string
	// Failed is the latest run's failure, when it failed after the last
	// success; FailError is its error.
	Failed, FailError string
	Lag               []string
}

type lookup struct {
	Views  []string // the views one may look up, for the form
	View   string
	Key    string
	Asked  bool // the form was submitted
	Error  string
	Entity string // the view's entity, and its key column
	Gen    string // the generation read
	Values []valueRow
}

type valueRow struct {
	Feature, Value, Status, EventTime string
	Stale, Missing                    bool
}

type rankerRow struct {
	Name, Version, LoadedAt, Path string
}

// listMax is the most elements of a list or vector the page shows.
const listMax = 20

// build reads what the page shows, and returns it with the page's HTTP
// status: 200, 400 for a lookup that is not valid, or 503 when a read
// failed.
func (h *Handler) build(ctx context.Context, v viewer, view, key string) (*page, int) {
	now := h.cfg.Now()
	proj := h.cfg.Project()
	p := &page{Project: proj.Name, Now: stamp(now), Open: !v.authn, Paths: v.role.Includes(larder.RoleAdmin)}
	if v.authn {
		p.Viewer = v.name + " (" + string(v.role) + ")"
	}
	code := http.StatusOK
	resp, err := h.cfg.Service.ListViews(ctx, &larderv1.ListViewsRequest{})
	if err != nil {
		p.ViewsError = message(err)
		code = http.StatusServiceUnavailable
	}
	for _, info := range resp.GetViews() {
		p.Views = append(p.Views, viewInfoRow(info, now))
		p.Streams = p.Streams || len(info.GetStreams()) > 0
	}
	for _, pv := range proj.Views {
		p.Lookup.Views = append(p.Lookup.Views, pv.Name)
	}
	if view != "" || key != "" {
		p.Lookup.View, p.Lookup.Key, p.Lookup.Asked = view, key, true
		if c := h.lookup(ctx, proj, &p.Lookup); c != http.StatusOK && code == http.StatusOK {
			code = c
		}
	}
	if h.cfg.Models != nil {
		for _, m := range h.cfg.Models() {
			r := rankerRow{Name: m.Ranker, Version: m.Version, LoadedAt: stamp(m.LoadedAt)}
			if p.Paths {
				r.Path = m.Path
			}
			p.Rankers = append(p.Rankers, r)
		}
	}
	return p, code
}

// lookup reads every feature of l.View for the key l.Key, and fills l in.
func (h *Handler) lookup(ctx context.Context, proj *larder.Project, l *lookup) int {
	v := proj.View(l.View)
	switch {
	case l.View == "":
		l.Error = "choose a view"
		return http.StatusBadRequest
	case v == nil:
		l.Error = fmt.Sprintf("unknown view %q (views: %s)", l.View, strings.Join(l.Views, ", "))
		return http.StatusBadRequest
	case l.Key == "":
		l.Error = "type a key"
		return http.StatusBadRequest
	}
	e := v.EntityDef()
	l.Entity = e.Name + " (" + e.Key + ")"
	k, err := larder.ParseKey(e.KeyType, l.Key)
	if err != nil {
		l.Error = fmt.Sprintf("entity %s is keyed by %s %s: %v", e.Name, e.KeyType, e.Key, err)
		return http.StatusBadRequest
	}
	pk := &larderv1.EntityKey{Key: &larderv1.EntityKey_Int64Value{Int64Value: k.Int64()}}
	if k.Type() == larder.TypeString {
		pk.Key = &larderv1.EntityKey_StringValue{StringValue: k.Str()}
	}
	resp, err := h.cfg.Service.GetFeatures(ctx, &larderv1.GetFeaturesRequest{Keys: []*larderv1.EntityKey{pk}, Features: []string{v.Name + ":*"}})
	if err != nil {
		l.Error = message(err)
		if status.Code(err) == codes.InvalidArgument {
			return http.StatusBadRequest
		}
		return http.StatusServiceUnavailable
	}
	for _, g := range resp.GetGenerations() {
		if g.GetView() == v.Name {
			l.Gen = fmt.Sprint(g.GetGeneration())
		}
	}
	f, err := client.NewFeatures(resp)
	if err == nil && f.Rows() != 1 {
		err = fmt.Errorf("%d rows for one key", f.Rows())
	}
	if err != nil {
		l.Error = "the service's answer does not hold together: " + err.Error()
		return http.StatusServiceUnavailable
	}
	for col := range f.Columns() {
		row := valueRow{Feature: strings.TrimPrefix(f.Name(col), v.Name+":"), Value: valueText(f.Value(col, 0)), EventTime: "-"}
		if t := f.EventTime(col, 0); !t.IsZero() {
			row.EventTime = stamp(t)
		}
		switch f.Status(col, 0) {
		case larderv1.FeatureStatus_FEATURE_STATUS_PRESENT:
			row.Status = "present"
		case larderv1.FeatureStatus_FEATURE_STATUS_STALE:
			row.Status, row.Stale = "stale", true
		case larderv1.FeatureStatus_FEATURE_STATUS_NOT_FOUND:
			row.Status, row.Missing, row.Value = "not found", true, "-"
		default:
			row.Status = "unknown"
		}
		l.Values = append(l.Values, row)
	}
	return http.StatusOK
}

// viewInfoRow formats what ListViews says of one view.
func viewInfoRow(info *larderv1.ViewInfo, now time.Time) viewRow {
	r := viewRow{Name: info.GetName(), Kind: info.GetKind(), Entity: info.GetEntity(),
		Generation: "none", Rows: "-", AsOf: "-", Age: "-", MaxAge: "none",
		Schedule: orDash(info.GetSchedule()), NextRun: "-", LastOK: "-", Failed: "-"}
	if info.GetGeneration() > 0 {
		r.Generation, r.Rows = fmt.Sprint(info.GetGeneration()), fmt.Sprint(info.GetRows())
		if info.GetAsOf() != nil {
			r.AsOf = stamp(info.GetAsOf().AsTime())
		}
		if info.GetAge() != nil {
			age := info.GetAge().AsDuration()
			r.Age = ago(age)
			r.Stale = info.GetMaxAge() != nil && age > info.GetMaxAge().AsDuration()
		}
	}
	if info.GetMaxAge() != nil {
		r.MaxAge = ago(info.GetMaxAge().AsDuration())
	}
	if info.GetSchedule() != "" && info.GetTimeZone() != "" && info.GetTimeZone() != "UTC" {
		r.Schedule += " (" + info.GetTimeZone() + ")"
	}
	if t := info.GetNextRunAt(); t != nil {
		r.NextRun = stamp(t.AsTime()) + " (in " + ago(t.AsTime().Sub(now)) + ")"
	}
	ok, failed := info.GetLastSuccess(), info.GetLastFailure()
	if ok != nil {
		r.LastOK = stamp(runEnd(ok)) + " (" + ago(now.Sub(runEnd(ok))) + " ago)"
		// The generation column shows the live one; a success that
		// published another (a run whose generation is not live yet, or
		// was replaced) says which.
		if g := ok.GetGeneration(); g > 0 && g != info.GetGeneration() {
			r.LastOK += ", generation " + fmt.Sprint(g)
		}
	}
	// A failure older than the last success has been recovered from.
	if failed != nil && (ok == nil || runEnd(failed).After(runEnd(ok))) {
		r.Failed, r.FailError = stamp(runEnd(failed))+" ("+ago(now.Sub(runEnd(failed)))+" ago)", failed.GetError()
	}
	for _, l := range info.GetStreams() {
		if l.GetError() != "" {
			r.Lag = append(r.Lag, l.GetStream()+": unknown ("+l.GetError()+")")
			continue
		}
		s := fmt.Sprintf("%s: %d unread", l.GetStream(), l.GetEntries())
		if l.GetPending() > 0 {
			s += fmt.Sprintf(", %d pending", l.GetPending())
		}
		if b := l.GetBehind().AsDuration(); b > 0 {
			s += ", " + ago(b) + " behind"
		}
		r.Lag = append(r.Lag, s)
	}
	return r
}

// runEnd returns when run ended, or when it started if its end is not
// recorded.
func runEnd(run *larderv1.RunSummary) time.Time {
	if run.GetFinishedAt() != nil {
		return run.GetFinishedAt().AsTime()
	}
	return ts(run.GetStartedAt())
}

func ts(t *timestamppb.Timestamp) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.AsTime()
}

// valueText formats a value as `larder get` does: lists and vectors
// longer than listMax show their first elements and how many in all.
func valueText(v *larderv1.Value) string {
	var d larder.Value
	n := 0
	switch k := v.GetKind().(type) {
	case *larderv1.Value_Int64Value:
		d = larder.Int64Value(k.Int64Value)
	case *larderv1.Value_Float64Value:
		d = larder.Float64Value(k.Float64Value)
	case *larderv1.Value_Float32Value:
		d = larder.Float32Value(k.Float32Value)
	case *larderv1.Value_BoolValue:
		d = larder.BoolValue(k.BoolValue)
	case *larderv1.Value_StringValue:
		d = larder.StringValue(k.StringValue)
	case *larderv1.Value_BytesValue:
		d = larder.BytesValue(k.BytesValue)
	case *larderv1.Value_Float32VectorValue:
		l := k.Float32VectorValue.GetValues()
		n, d = len(l), larder.Float32VectorValue(l[:min(len(l), listMax)])
	case *larderv1.Value_Int64ListValue:
		l := k.Int64ListValue.GetValues()
		n, d = len(l), larder.Int64ListValue(l[:min(len(l), listMax)])
	case *larderv1.Value_StringListValue:
		l := k.StringListValue.GetValues()
		n, d = len(l), larder.StringListValue(l[:min(len(l), listMax)])
	default:
		return "null"
	}
	s := d.String()
	if n > listMax {
		s = fmt.Sprintf("%s ...] (%d in all)", s[:len(s)-1], n)
	}
	return s
}

// message returns the message of a gRPC status error, without the
// "rpc error: code = ..." wrapping, or err's text.
func message(err error) string {
	if s, ok := status.FromError(err); ok {
		return s.Message()
	}
	return err.Error()
}

// stamp formats an instant as the CLI does: RFC 3339, in UTC.
func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// ago formats a duration as `larder views` shows ages (larder.AgeText).
func ago(d time.Duration) string { return larder.AgeText(d) }

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
