package larder

import (
	"fmt"
	"strings"
)

// setLimitDefaults fills the zero limits of s with their defaults.
func (s *Server) setLimitDefaults() {
	if s.MaxFeatures == 0 {
		s.MaxFeatures = DefaultMaxFeatures
	}
	if s.MaxRequestCells == 0 {
		s.MaxRequestCells = DefaultMaxRequestCells
	}
	if s.MaxResponseBytes == 0 {
		s.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if s.MaxConcurrentRequests == 0 {
		s.MaxConcurrentRequests = DefaultMaxConcurrentRequests
	}
	if s.DefaultDeadline == 0 {
		s.DefaultDeadline = DefaultDeadline
	}
	if s.MaxDeadline == 0 {
		s.MaxDeadline = DefaultMaxDeadline
	}
}

// validateLimits checks the limits of s; a zero limit stands for its
// default.
func (s *Server) validateLimits(add addFunc) {
	for _, l := range []struct {
		field string
		v     int
		what  string
	}{
		{"max_features", s.MaxFeatures, "the feature references of one GetFeatures request, such as 1000"},
		{"max_request_cells", s.MaxRequestCells, "keys × columns of one GetFeatures, candidates × inputs of one Rank, such as 100000"},
		{"max_response_bytes", s.MaxResponseBytes, "the encoded size of one response, such as 64MiB"},
		{"max_concurrent_requests", s.MaxConcurrentRequests, "the FeatureService requests one server handles at once, such as 256"},
	} {
		if l.v < 0 {
			add("server."+l.field, "must be positive, got %d: %s", l.v, l.what)
		}
	}
	def, limit := s.DefaultDeadline, s.MaxDeadline
	switch {
	case def < 0:
		add("server.default_deadline", "must be positive, got %s: how long a request without a deadline of its own may take, such as 5s", DurationText(def))
	case limit < 0:
		add("server.max_deadline", "must be positive, got %s: the longest a request may take, whatever its own deadline, such as 30s", DurationText(limit))
	default:
		if def == 0 {
			def = DefaultDeadline
		}
		if limit == 0 {
			limit = DefaultMaxDeadline
		}
		if def > limit {
			add("server.default_deadline", "must not be longer than max_deadline (%s), got %s; raise max_deadline or shorten default_deadline", DurationText(limit), DurationText(def))
		}
	}
}

// checkNameLengths reports every name longer than MaxNameBytes: a request
// could not name it, since the server refuses longer names unread.
func (p *Project) checkNameLengths(add addFunc) {
	check := func(path, name string) {
		if len(name) > MaxNameBytes {
			add(path, "%q… is %d bytes long; a name is at most %d bytes", name[:20], len(name), MaxNameBytes)
		}
	}
	for i, e := range p.Entities {
		check(fmt.Sprintf("entities[%d].name", i), e.Name)
	}
	for i, s := range p.Sources {
		check(fmt.Sprintf("sources[%d].name", i), s.Name)
	}
	for i, v := range p.Views {
		check(fmt.Sprintf("views[%d].name", i), v.Name)
		for j, f := range v.Features {
			check(fmt.Sprintf("views[%d].features[%d].name", i, j), f.Name)
		}
	}
	for i, r := range p.Rankers {
		check(fmt.Sprintf("rankers[%d].name", i), r.Name)
		for j, in := range r.Inputs {
			if view, name, ok := strings.Cut(in.Ref, ":"); ok && view == RequestPrefix {
				check(fmt.Sprintf("rankers[%d].inputs[%d]", i, j), name)
			}
		}
	}
}
