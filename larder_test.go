package larder_test

import (
	"errors"
	"math"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/larder-dev/larder"
)

func TestParseType(t *testing.T) {
	for _, name := range larder.TypeNames() {
		typ, err := larder.ParseType(name)
		if err != nil {
			t.Fatalf("ParseType(%q): %v", name, err)
		}
		if typ.String() != name {
			t.Errorf("ParseType(%q).String() = %q", name, typ.String())
		}
	}
	if _, err := larder.ParseType("double"); err == nil || !strings.Contains(err.Error(), "float64") {
		t.Errorf("ParseType(double) error = %v, want one listing the valid names", err)
	}
}

func TestValueAccessors(t *testing.T) {
	tests := []struct {
		name string
		v    larder.Value
		typ  larder.Type
		text string
		num  float64
		isN  bool
	}{
		{"null", larder.Null, larder.TypeInvalid, "null", 0, false},
		{"int64", larder.Int64Value(-42), larder.TypeInt64, "-42", -42, true},
		{"float64", larder.Float64Value(0.1), larder.TypeFloat64, "0.1", 0.1, true},
		{"float32", larder.Float32Value(0.5), larder.TypeFloat32, "0.5", 0.5, true},
		{"bool", larder.BoolValue(true), larder.TypeBool, "true", 1, true},
		{"string", larder.StringValue("a b"), larder.TypeString, `"a b"`, 0, false},
		{"bytes", larder.BytesValue([]byte{1, 255}), larder.TypeBytes, "0x01ff", 0, false},
		{"vector", larder.Float32VectorValue([]float32{1, 2.5}), larder.TypeFloat32Vector, "[1 2.5]", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.v.Type() != tt.typ {
				t.Errorf("Type() = %v, want %v", tt.v.Type(), tt.typ)
			}
			if tt.v.IsNull() != (tt.typ == larder.TypeInvalid) {
				t.Errorf("IsNull() = %v", tt.v.IsNull())
			}
			if tt.v.String() != tt.text {
				t.Errorf("String() = %q, want %q", tt.v.String(), tt.text)
			}
			n, ok := tt.v.Number()
			if ok != tt.isN || n != tt.num {
				t.Errorf("Number() = %v, %v; want %v, %v", n, ok, tt.num, tt.isN)
			}
			if !tt.v.Equal(tt.v) {
				t.Error("a value does not equal itself")
			}
		})
	}
	if !larder.Float64Value(math.NaN()).Equal(larder.Float64Value(math.NaN())) {
		t.Error("NaN values with the same bits should be equal")
	}
	if larder.Int64Value(1).Equal(larder.BoolValue(true)) {
		t.Error("values of different types compare equal")
	}
}

func TestParseKey(t *testing.T) {
	k, err := larder.ParseKey(larder.TypeInt64, "123")
	if err != nil || k.Int64() != 123 || k.String() != "123" {
		t.Fatalf("ParseKey int64 = %#v, %v", k, err)
	}
	if _, err := larder.ParseKey(larder.TypeInt64, "abc"); !larder.IsInvalid(err) {
		t.Errorf("ParseKey(int64, abc) error = %v, want an InvalidError", err)
	}
	user := &larder.Entity{Name: "user", Key: "user_id", KeyType: larder.TypeInt64}
	if err := larder.StringKey("x").Check(user); err == nil || !strings.Contains(err.Error(), "must be int64") {
		t.Errorf("Check of a string key against an int64 entity = %v", err)
	}
	if got := string(larder.StringKey("ab").AppendCanonical([]byte("k:"))); got != "k:ab" {
		t.Errorf("AppendCanonical = %q", got)
	}
}

func validProject() *larder.Project {
	p := &larder.Project{
		Name: "shop",
		Entities: []*larder.Entity{
			{Name: "user", Key: "user_id", KeyType: larder.TypeInt64},
			{Name: "item", Key: "item_id", KeyType: larder.TypeInt64},
		},
		Sources: []*larder.Source{{Name: "users", Path: "u.parquet", EventTime: "ts"}, {Name: "items", Path: "i", EventTime: "ts"}},
		Views: []*larder.View{
			{Name: "user_profile", Kind: larder.KindLatest, Entity: "user", Source: "users", Features: []larder.Feature{{Name: "age", Type: larder.TypeInt64}, {Name: "country", Type: larder.TypeString}}},
			{Name: "item_profile", Kind: larder.KindLatest, Entity: "item", Source: "items", Features: []larder.Feature{{Name: "price", Type: larder.TypeFloat64}}},
		},
		Rankers: []*larder.Ranker{{
			Name: "feed", Model: "m.onnx", Context: "user", Candidate: "item",
			Inputs: []larder.RankerInput{{Ref: "user_profile:age"}, {Ref: "item_profile:price"}, {Ref: "request:hour"}},
		}},
	}
	p.SetDefaults()
	return p
}

func TestValidateResolves(t *testing.T) {
	p := validProject()
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	r := p.Ranker("feed")
	wantSides := []larder.InputSide{larder.SideContext, larder.SideCandidate, larder.SideRequest}
	for i, in := range r.Inputs {
		if in.Side != wantSides[i] {
			t.Errorf("input %d side = %v, want %v", i, in.Side, wantSides[i])
		}
	}
	if r.Inputs[1].View != p.View("item_profile") || r.Inputs[2].Request != "hour" {
		t.Errorf("inputs not resolved: %+v", r.Inputs)
	}
	if r.TopK != larder.DefaultTopK || p.Server.MaxEntities != larder.DefaultMaxEntities {
		t.Error("defaults not applied")
	}
	if p.View("user_profile").Features[1].Column != "country" {
		t.Error("feature column does not default to its name")
	}
	if p.View("user_profile").Fingerprint() == p.View("item_profile").Fingerprint() {
		t.Error("different schemas share a fingerprint")
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(p *larder.Project)
		paths []string
		msg   string
	}{
		{"no project name", func(p *larder.Project) { p.Name = "" }, []string{"project"}, "required"},
		{"duplicate view", func(p *larder.Project) { p.Views[1].Name = "user_profile" }, []string{"views[1].name", "rankers[0].inputs[1]"}, "duplicate view"},
		{"unknown entity", func(p *larder.Project) { p.Views[0].Entity = "usr" }, []string{"views[0].entity"}, `unknown entity "usr"`},
		{"unknown source", func(p *larder.Project) { p.Views[0].Source = "x" }, []string{"views[0].source"}, "unknown source"},
		{"bad kind", func(p *larder.Project) { p.Views[0].Kind = "magic" }, []string{"views[0].kind"}, "unknown kind"},
		{"duplicate feature", func(p *larder.Project) { p.Views[0].Features[1].Name = "age" }, []string{"views[0].features[1].name"}, "duplicate feature"},
		{"dangling input", func(p *larder.Project) { p.Rankers[0].Inputs[0].Ref = "nope:age" }, []string{"rankers[0].inputs[0]"}, `unknown view "nope"`},
		{"unknown input feature", func(p *larder.Project) { p.Rankers[0].Inputs[1].Ref = "item_profile:colour" }, []string{"rankers[0].inputs[1]"}, "has no feature"},
		{"string input", func(p *larder.Project) { p.Rankers[0].Inputs[0].Ref = "user_profile:country" }, []string{"rankers[0].inputs[0]"}, "model inputs must be"},
		{"bad ref", func(p *larder.Project) { p.Rankers[0].Inputs[0].Ref = "age" }, []string{"rankers[0].inputs[0]"}, "not a reference"},
		{"two problems", func(p *larder.Project) { p.Entities[0].Key = ""; p.Rankers[0].Candidate = "" }, []string{"entities[0].key", "rankers[0].candidate"}, "required"},
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
}

// wires reports whether package own (relative to the module) may wire
// adapters together: the binary's, and the load generator's, which builds a
// world of its own for `larder bench` as the binary does for `larder serve`.
func wires(own string) bool {
	return strings.HasPrefix(own, "cmd/") || own == "bench"
}

// TestDependencyDirection keeps the layout of DESIGN.md: the root package
// imports only the standard library, and only models (and the binary) may
// import the ONNX Runtime binding.
func TestDependencyDirection(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if dep != "github.com/larder-dev/larder" {
			t.Errorf("the root package depends on %s; it must import the standard library only", dep)
		}
	}

	out, err = exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	const mod = "github.com/larder-dev/larder/"
	adapters := []string{"config", "store", "materializer", "models", "server", "demo", "queue", "scheduler", "console"}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg, imports := fields[0], fields[1:]
		own := strings.TrimPrefix(pkg, mod)
		for _, imp := range imports {
			if strings.HasPrefix(imp, "github.com/yalue/onnxruntime_go") &&
				!strings.HasPrefix(own, "models") && !strings.HasPrefix(own, "cmd/") {
				t.Errorf("%s imports onnxruntime_go; only models and cmd may", pkg)
			}
			for _, a := range adapters {
				if strings.HasPrefix(imp, mod+a) && !wires(own) &&
					!strings.HasPrefix(own, a) && topLevel(own) != topLevel(a) {
					t.Errorf("%s imports %s; adapters must not import each other (wire them in cmd)", pkg, imp)
				}
			}
		}
	}
}

func topLevel(p string) string {
	top, _, _ := strings.Cut(p, "/")
	return top
}

// TestCheckEventTime takes an event time up to MaxEventSkew past the clock
// and refuses one further ahead, naming the clock.
func TestCheckEventTime(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	for _, at := range []time.Time{now.AddDate(-1, 0, 0), now, now.Add(larder.MaxEventSkew)} {
		if err := larder.CheckEventTime(at, now, "the server's clock"); err != nil {
			t.Errorf("%s: %v", at, err)
		}
	}
	err := larder.CheckEventTime(now.Add(larder.MaxEventSkew+time.Millisecond), now, "the server's clock")
	if want := "2026-05-01T12:01:00.001Z is more than 1m0s past the server's clock"; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("a minute and a millisecond ahead: %v, want %q", err, want)
	}
	if err := larder.CheckEventTime(time.UnixMilli(99999999999999), now, "the clock"); err == nil {
		t.Errorf("year 5138: taken")
	}
}
