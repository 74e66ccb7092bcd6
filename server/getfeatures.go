package server

import (
	"context"
	"slices"

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

	var (
		lookups []*larder.Lookup
		cols    []column
		names   []string
		entity  *larder.Entity
	)
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
		li := slices.IndexFunc(lookups, func(l *larder.Lookup) bool { return l.View == v })
		if li < 0 {
			lookups = append(lookups, &larder.Lookup{View: v})
			li = len(lookups) - 1
		}
		if feature == "*" {
			for fi, f := range v.Features {
				cols = append(cols, column{lookup: li, feature: fi})
				names = append(names, v.Name+":"+f.Name)
			}
			continue
		}
		fi := v.FeatureIndex(feature)
		if fi < 0 {
			return nil, larder.Invalidf("features[%d]: view %q has no feature %q%s", i, viewName, feature, knownFeatures(v))
		}
		cols = append(cols, column{lookup: li, feature: fi})
		names = append(names, ref)
	}

	keys := make([]larder.Key, len(req.GetKeys()))
	for i, k := range req.GetKeys() {
		key, err := keyFromProto(k, entity, "keys", i)
		if err != nil {
			return nil, err
		}
		keys[i] = key
	}
	for _, l := range lookups {
		l.Keys = keys
	}
	if err := s.store.Read(ctx, lookups); err != nil {
		return nil, err
	}

	now := s.now()
	resp := &larderv1.GetFeaturesResponse{
		Features:    names,
		Rows:        make([]*larderv1.FeatureRow, len(keys)),
		Generations: make([]*larderv1.ViewGeneration, len(lookups)),
	}
	for i, l := range lookups {
		resp.Generations[i] = &larderv1.ViewGeneration{View: l.View.Name, Generation: l.Generation, Model: l.Model}
	}
	// One timestamp and status per (key, view): every value of a view's row
	// shares them, and sharing the message saves an allocation per value.
	times := make([]*timestamppb.Timestamp, len(lookups))
	statuses := make([]larder.Status, len(lookups))
	values := make([]larderv1.FeatureValue, len(keys)*len(cols))
	for ki, key := range req.GetKeys() {
		for li, l := range lookups {
			statuses[li] = l.View.Status(l.Found[ki], l.Rows[ki].EventTime, now)
			times[li] = nil
			if l.Found[ki] {
				times[li] = timestamppb.New(l.Rows[ki].EventTime)
			}
		}
		row := &larderv1.FeatureRow{Key: key, Values: make([]*larderv1.FeatureValue, len(cols))}
		for ci, c := range cols {
			fv := &values[ki*len(cols)+ci]
			l := lookups[c.lookup]
			fv.Status = statusToProto(statuses[c.lookup])
			fv.EventTime = times[c.lookup]
			if l.Found[ki] {
				fv.Value = valueToProto(l.Rows[ki].Values[c.feature])
			} else {
				fv.Value = &larderv1.Value{}
			}
			row.Values[ci] = fv
		}
		resp.Rows[ki] = row
	}
	return resp, nil
}
