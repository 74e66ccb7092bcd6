package larder_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/larder-dev/larder"
)

func TestServerLimitDefaults(t *testing.T) {
	p := validProject()
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	s := p.Server
	if s.MaxFeatures != 1000 || s.MaxRequestCells != 100_000 || s.MaxResponseBytes != 64<<20 ||
		s.MaxConcurrentRequests != 256 || s.DefaultDeadline != 5*time.Second || s.MaxDeadline != 30*time.Second {
		t.Errorf("Server = %+v, want the default limits", s)
	}

	// Settings are kept.
	p = &larder.Project{Server: larder.Server{MaxFeatures: 3, MaxRequestCells: 4, MaxResponseBytes: 5, MaxConcurrentRequests: 6,
		DefaultDeadline: time.Second, MaxDeadline: 2 * time.Second}}
	p.SetDefaults()
	if s := p.Server; s.MaxFeatures != 3 || s.MaxRequestCells != 4 || s.MaxResponseBytes != 5 || s.MaxConcurrentRequests != 6 ||
		s.DefaultDeadline != time.Second || s.MaxDeadline != 2*time.Second {
		t.Errorf("after SetDefaults: %+v", s)
	}
}

func TestValidateLimits(t *testing.T) {
	long := "a" + strings.Repeat("b", larder.MaxNameBytes)
	tests := []struct {
		name  string
		edit  func(p *larder.Project)
		paths []string
		msg   string
	}{
		{"negative max_features", func(p *larder.Project) { p.Server.MaxFeatures = -1 }, []string{"server.max_features"}, "must be positive, got -1"},
		{"negative max_request_cells", func(p *larder.Project) { p.Server.MaxRequestCells = -1 }, []string{"server.max_request_cells"}, "must be positive"},
		{"negative max_response_bytes", func(p *larder.Project) { p.Server.MaxResponseBytes = -1 }, []string{"server.max_response_bytes"}, "must be positive"},
		{"negative max_concurrent_requests", func(p *larder.Project) { p.Server.MaxConcurrentRequests = -1 }, []string{"server.max_concurrent_requests"}, "must be positive"},
		{"negative default_deadline", func(p *larder.Project) { p.Server.DefaultDeadline = -time.Second }, []string{"server.default_deadline"}, "must be positive, got -1s"},
		{"negative max_deadline", func(p *larder.Project) { p.Server.MaxDeadline = -time.Second }, []string{"server.max_deadline"}, "must be positive, got -1s"},
		{"default_deadline past max_deadline", func(p *larder.Project) { p.Server.DefaultDeadline = time.Minute }, []string{"server.default_deadline"},
			"must not be longer than max_deadline (30s), got 1m"},
		{"default_deadline past the default max_deadline", func(p *larder.Project) { p.Server.DefaultDeadline, p.Server.MaxDeadline = time.Minute, 0 },
			[]string{"server.default_deadline"}, "must not be longer than max_deadline (30s), got 1m"},
		{"long view name", func(p *larder.Project) {
			p.Views[1].Name = long
			p.Rankers[0].Inputs[1].Ref = long + ":price"
		}, []string{"views[1].name"}, `"abbbbbbbbbbbbbbbbbbb"… is 129 bytes long; a name is at most 128 bytes`},
		{"long feature name", func(p *larder.Project) { p.Views[0].Features[1].Name = long }, []string{"views[0].features[1].name"}, "129 bytes long"},
		{"long entity name", func(p *larder.Project) {
			p.Entities[0].Name, p.Views[0].Entity, p.Rankers[0].Context = long, long, long
		},
			[]string{"entities[0].name"}, "129 bytes long"},
		{"long ranker name", func(p *larder.Project) { p.Rankers[0].Name = long }, []string{"rankers[0].name"}, "129 bytes long"},
		{"long request feature name", func(p *larder.Project) { p.Rankers[0].Inputs[2].Ref = "request:" + long }, []string{"rankers[0].inputs[2]"}, "129 bytes long"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := validProject()
			tt.edit(p)
			err := p.Validate()
			var ve *larder.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Validate() = %v, want a *ValidationError", err)
			}
			var paths []string
			for _, fe := range ve.Errs {
				paths = append(paths, fe.Path)
			}
			if strings.Join(paths, " ") != strings.Join(tt.paths, " ") {
				t.Errorf("paths = %q, want %q (%v)", paths, tt.paths, err)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not mention %q", err, tt.msg)
			}
		})
	}

	// A name of MaxNameBytes is fine, and so is a reference of two.
	p := validProject()
	name := "a" + strings.Repeat("b", larder.MaxNameBytes-1)
	p.Views[1].Name, p.Views[1].Features[0].Name = name, name
	p.Rankers[0].Inputs[1].Ref = name + ":" + name
	if err := p.Validate(); err != nil {
		t.Fatalf("names of %d bytes: %v", larder.MaxNameBytes, err)
	}
	if n := len(p.Rankers[0].Inputs[1].Ref); n != larder.MaxRefBytes {
		t.Errorf("the longest reference is %d bytes, MaxRefBytes %d", n, larder.MaxRefBytes)
	}
}
