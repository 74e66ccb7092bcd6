package server_test

import (
	"cmp"
	"context"
	"errors"
	"google.golang.org/protobuf/types/known/timestamppb"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"

	"github.com/larder-dev/larder"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
	"github.com/larder-dev/larder/server"
	"github.com/larder-dev/larder/store"
)

// The fuzz targets of this file send requests built from fuzzed fields to
// a Service over a real store on an embedded miniredis (a round trip costs
// little there), holding the test project with its candidates views. The
// handlers must never panic, and must answer OK or a status that blames the
// request or the data: never INTERNAL or UNKNOWN.

// maxStatusMessage is a generous bound on a status message, for requests of
// at most maxFuzzInput bytes of text: a message names what was wrong, it
// does not echo a request at any length.
const (
	maxStatusMessage = 64 << 10
	maxFuzzInput     = 8 << 10
)

// fuzzModel is the reco ranker's model in the fuzz targets. It scores a
// row by the sum of its inputs, or, by mode, fails as a model may.
type fuzzModel struct{ mode uint8 }

// The modes of fuzzModel.
const (
	modelSum         = iota // the sum of each row's inputs
	modelFails              // an error: Rank answers degraded
	modelUnavailable        // server.ErrModelUnavailable: degraded too
	modelNaN                // NaN for every row
	modelOverloaded         // larder.ErrOverloaded: Rank answers RESOURCE_EXHAUSTED
	modelModes
)

func (m *fuzzModel) Score(_ context.Context, x []float32, n int, out []float32) error {
	switch m.mode {
	case modelFails:
		return errors.New("the model failed")
	case modelUnavailable:
		return server.ErrModelUnavailable
	case modelOverloaded:
		return larder.ErrOverloaded
	}
	f := len(x) / max(n, 1)
	for i := range n {
		var sum float32
		for _, v := range x[i*f : (i+1)*f] {
			sum += v
		}
		if m.mode == modelNaN {
			sum = float32(math.NaN())
		}
		out[i] = sum
	}
	return nil
}

func (m *fuzzModel) Version() string { return "fuzz" }

// fuzzServer is a Service of the test project, with candidates views, over
// a store on miniredis holding the fixture's data and stored candidate
// lists for users 1 to 4; user_never and user_similar are never published.
type fuzzServer struct {
	svc     *server.Service
	model   *fuzzModel
	project *larder.Project
}

func newFuzzServer(tb testing.TB) *fuzzServer {
	tb.Helper()
	p := testProject(tb, withCandidates)
	m := miniredis.NewMiniRedis()
	if err := m.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(m.Close)
	client := redis.NewClient(&redis.Options{Addr: m.Addr()})
	tb.Cleanup(func() { client.Close() })
	st := store.New(client, p.Name, store.Options{})
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	data := fixtureData(t0)
	for _, view := range []string{"user_profile", "user_stats", "item_info"} {
		publish(tb, st, p, view, data[view])
	}
	list := func(items ...string) larder.Row {
		scores := make([]float32, len(items))
		for i := range scores {
			scores[i] = float32(len(items) - i)
		}
		return larder.Row{EventTime: t0.Add(-time.Minute), Values: []larder.Value{larder.StringListValue(items), larder.Float32VectorValue(scores)}}
	}
	long := make([]string, 3*testMaxCandidates)
	for i := range long {
		long[i] = []string{"i1", "i2", "i3", "i4", "i5", "i6", "", "ï"}[i%8]
	}
	publish(tb, st, p, "user_recs", map[larder.Key]larder.Row{
		larder.Int64Key(1): list("i2", "i5", "i1", "i6", "i3", "i4"),
		larder.Int64Key(2): list(),
		larder.Int64Key(3): list(long...),
		larder.Int64Key(4): {EventTime: t0, Values: []larder.Value{larder.Null, larder.Null}},
	})
	model := &fuzzModel{}
	svc, err := server.New(server.Config{Project: p, Store: st, Models: map[string]server.Model{"reco": model},
		Now: func() time.Time { return t0 }})
	if err != nil {
		tb.Fatal(err)
	}
	return &fuzzServer{svc: svc, model: model, project: p}
}

// checkStatus fails t unless err is nil or a gRPC status of one of the
// codes a request may earn; cancelled says whether the request's context
// was cancelled, which allows CANCELED. inputLen is the size of the
// request's text, to which the message's bound applies.
func checkStatus(t *testing.T, err error, cancelled bool, inputLen int, allowed ...codes.Code) codes.Code {
	t.Helper()
	if err == nil {
		return codes.OK
	}
	st, ok := status.FromError(err)
	if !ok {
		t.Fatalf("error %v (%T) is not a gRPC status", err, err)
	}
	code := st.Code()
	switch {
	case code == codes.Internal || code == codes.Unknown:
		t.Fatalf("%s: %.2000s", code, st.Message())
	case code == codes.Canceled && cancelled:
	case !slices.Contains(allowed, code):
		t.Fatalf("%s (want OK or one of %v): %.2000s", code, allowed, st.Message())
	}
	if st.Message() == "" {
		t.Fatalf("%s with no message", code)
	}
	if inputLen <= maxFuzzInput && len(st.Message()) > maxStatusMessage {
		t.Fatalf("%s message of %d bytes for %d bytes of request text", code, len(st.Message()), inputLen)
	}
	return code
}

// checkMarshals fails t unless the server's codec encodes resp, as it
// would to send it.
func checkMarshals(t *testing.T, resp any) {
	t.Helper()
	b, err := server.Codec{}.Marshal(resp)
	if err != nil {
		t.Fatalf("the response does not encode: %v", err)
	}
	b.Free()
}

// fuzzKeys builds entity keys from spec, a byte per key: an int64 key near
// id, the string keys s1 and s2 (of any bytes), a fixture item, a key with
// no value, or a nil key.
func fuzzKeys(spec []byte, id int64, s1, s2 string) []*larderv1.EntityKey {
	keys := make([]*larderv1.EntityKey, len(spec))
	for i, b := range spec {
		switch b % 6 {
		case 0:
			keys[i] = intKey(id + int64(b>>3))
		case 1:
			keys[i] = strKey(s1)
		case 2:
			keys[i] = strKey(s2)
		case 3:
			keys[i] = strKey([]string{"i1", "i2", "i3", "i4", "i5", "i6"}[int(b>>3)%6])
		case 4:
			keys[i] = &larderv1.EntityKey{}
		}
	}
	return keys
}

// splitRefs splits a fuzzed list of references at commas; "" is none.
func splitRefs(refs string) []string {
	if refs == "" {
		return nil
	}
	return strings.Split(refs, ",")
}

// expectRefs resolves features against p as GetFeatures documents it, to
// hold the server to: the response's column names (a column named twice
// is answered once, where it first appears) and their entity, or false
// when a reference is not valid.
func expectRefs(p *larder.Project, features []string) (names []string, entity *larder.Entity, unpublished, ok bool) {
	for _, ref := range features {
		viewName, feature, ok := larder.SplitRef(ref)
		v := p.View(viewName)
		if !ok || v == nil || entity != nil && v.EntityDef() != entity {
			return nil, nil, false, false
		}
		entity = v.EntityDef()
		unpublished = unpublished || viewName == "user_never" || viewName == "user_similar"
		if feature == "*" {
			for _, f := range v.Features {
				names = append(names, viewName+":"+f.Name)
			}
			continue
		}
		if v.FeatureIndex(feature) < 0 {
			return nil, nil, false, false
		}
		names = append(names, ref)
	}
	seen := map[string]bool{}
	names = slices.DeleteFunc(names, func(n string) bool {
		dup := seen[n]
		seen[n] = true
		return dup
	})
	return names, entity, unpublished, len(features) > 0
}

// FuzzFeatureRefs checks GetFeatures' resolution of feature references,
// "view:feature" and "view:*", separated by commas in the fuzzed text, for
// a key of the right entity: it answers with the columns the references
// name, INVALID_ARGUMENT for a reference that is not valid, and
// FAILED_PRECONDITION for a view never published.
func FuzzFeatureRefs(f *testing.F) {
	for _, seed := range []string{
		"user_profile:age", "user_profile:*", "item_info:*", "user_profile:age,user_stats:*,user_profile:age",
		"user_profile:age,item_info:price", "user_never:x", "user_never:*", "user_recs:*", "user_similar:*",
		"nope:x", "user_profile:nope", "user_profile:", ":age", ":", "", ",", "user_profile:*,",
		"user_profile:**", "user_profile:age:x", "user_profile::", "\xff:\xfe", "user_profile:\x00", "USER_PROFILE:age",
		"user_profile:age,nope:*", "item_info:price,item_info:*,item_info:title",
	} {
		f.Add(seed)
	}
	fz := newFuzzServer(f)
	f.Fuzz(func(t *testing.T, refs string) {
		features := splitRefs(refs)
		names, entity, unpublished, valid := expectRefs(fz.project, features)
		key := intKey(1)
		if entity != nil && entity.KeyType == larder.TypeString {
			key = strKey("i1")
		}
		resp, err := fz.svc.GetFeatures(context.Background(), &larderv1.GetFeaturesRequest{Keys: []*larderv1.EntityKey{key}, Features: features})
		code := checkStatus(t, err, false, len(refs), codes.InvalidArgument, codes.FailedPrecondition)
		switch {
		case !valid:
			if code != codes.InvalidArgument {
				t.Fatalf("references %q: %s, want INVALID_ARGUMENT", features, code)
			}
		case unpublished:
			if code != codes.FailedPrecondition {
				t.Fatalf("references %q of a view never published: %s, want FAILED_PRECONDITION", features, code)
			}
		case code != codes.OK:
			t.Fatalf("references %q: %v, want columns %q", features, err, names)
		default:
			if !slices.Equal(columnNames(resp), names) {
				t.Fatalf("references %q: columns %q, want %q", features, columnNames(resp), names)
			}
			if rows := rowsOf(resp); len(rows) != 1 || len(rows[0]) != len(names) {
				t.Fatalf("references %q: rows %v, want one of %d values", features, rows, len(names))
			}
			checkMarshals(t, resp)
		}
	})
}

// FuzzGetFeatures sends GetFeatures requests of fuzzed keys (see fuzzKeys)
// and references, sometimes with a cancelled context.
func FuzzGetFeatures(f *testing.F) {
	f.Add([]byte{0}, int64(1), "", "", "user_profile:*", false)
	f.Add([]byte{0, 8, 16, 24, 0}, int64(1), "", "", "user_profile:age,user_stats:*", false)
	f.Add([]byte{3, 9, 21, 1, 2}, int64(0), "i1", "\xff\xfe", "item_info:*", false)
	f.Add([]byte{1}, int64(0), "", "", "item_info:title", false)
	f.Add([]byte{0}, int64(0), "", "", "item_info:title", false) // an int64 key for a string entity
	f.Add([]byte{4}, int64(0), "", "", "user_profile:age", false)
	f.Add([]byte{5}, int64(0), "", "", "user_profile:age", false)
	f.Add([]byte{}, int64(0), "", "", "user_profile:age", false)
	f.Add([]byte{0}, int64(0), "", "", "", false)
	f.Add(make([]byte, testMaxEntities), int64(-5), "", "", "user_stats:clicks", false)
	f.Add(make([]byte, testMaxEntities+1), int64(-5), "", "", "user_stats:clicks", false)
	f.Add([]byte{0}, int64(1), "", "", "user_never:*", false)
	f.Add([]byte{0}, int64(1), "", "", "user_profile:*", true)
	f.Add([]byte{0, 0}, int64(-9223372036854775808), "", "", "user_recs:*", false)
	fz := newFuzzServer(f)
	f.Fuzz(func(t *testing.T, spec []byte, id int64, s1, s2, refs string, cancel bool) {
		ctx := context.Background()
		if cancel {
			c, stop := context.WithCancel(ctx)
			stop()
			ctx = c
		}
		keys := fuzzKeys(spec, id, s1, s2)
		resp, err := fz.svc.GetFeatures(ctx, &larderv1.GetFeaturesRequest{Keys: keys, Features: splitRefs(refs)})
		code := checkStatus(t, err, cancel, len(s1)+len(s2)+len(refs), codes.InvalidArgument, codes.FailedPrecondition)
		if code != codes.OK {
			return
		}
		if rows := rowsOf(resp); len(rows) != len(keys) {
			t.Fatalf("%d rows for %d keys: %v", len(rows), len(keys), resp)
		}
		checkMarshals(t, resp)
	})
}

// fuzzValue builds a request feature's value of kind k from fuzzed numbers;
// kind 0 is a nil Value, 6 one with no kind set.
func fuzzValue(k byte, n int64, x float64, s string) *larderv1.Value {
	switch k % 11 {
	case 0:
		return nil
	case 1:
		return intVal(n)
	case 2:
		return f64Val(x)
	case 3:
		return f32Val(float32(x))
	case 4:
		return boolVal(n%2 == 0)
	case 5:
		return strVal(s)
	case 6:
		return &larderv1.Value{}
	case 7:
		return &larderv1.Value{Kind: &larderv1.Value_BytesValue{BytesValue: []byte(s)}}
	case 8:
		return &larderv1.Value{Kind: &larderv1.Value_Float32VectorValue{Float32VectorValue: &larderv1.FloatVector{Values: []float32{float32(x)}}}}
	case 9:
		return &larderv1.Value{Kind: &larderv1.Value_Int64ListValue{Int64ListValue: &larderv1.Int64List{Values: []int64{n}}}}
	default:
		return &larderv1.Value{Kind: &larderv1.Value_StringListValue{StringListValue: &larderv1.StringList{Values: []string{s}}}}
	}
}

// FuzzRank sends Rank requests of fuzzed fields to the reco ranker (or a
// fuzzed name): a context key of any kind, candidates from fuzzKeys (none:
// the stored list of user_recs), request features named by a comma list
// with values of kinds from kinds, any top_k, with or without explain, a
// model that works or fails (mode), and sometimes a cancelled context.
func FuzzRank(f *testing.F) {
	type seed struct {
		ranker    string
		ctxKind   uint8 // 0 none, 1 int64 id, 2 string s, 3 no value
		id        int64
		s         string
		spec      []byte
		s2        string
		topK      int32
		reqNames  string
		kinds     []byte
		n         int64
		x         float64
		explain   bool
		mode      uint8
		cancelled bool
	}
	hm := []byte{1, 4} // hour an int64, mobile a bool
	for _, sd := range []seed{
		{ranker: "reco", ctxKind: 1, id: 1, spec: []byte{3, 9, 21}, topK: 2, reqNames: "hour,mobile", kinds: hm, n: 13},
		{ranker: "reco", ctxKind: 1, id: 1, reqNames: "hour,mobile", kinds: hm, n: 13, explain: true}, // the stored list
		{ranker: "reco", ctxKind: 1, id: 3, topK: 100, reqNames: "hour", kinds: []byte{2}, x: 1e300},  // a long stored list
		{ranker: "reco", ctxKind: 1, id: 2, reqNames: "hour,mobile", kinds: hm},                       // an empty one
		{ranker: "reco", ctxKind: 1, id: 4, reqNames: "hour,mobile", kinds: hm, mode: modelFails},     // a null one
		{ranker: "reco", ctxKind: 1, id: 99, reqNames: "hour,mobile", kinds: hm},                      // none
		{ranker: "reco", ctxKind: 1, id: 1, s: "\xff", spec: []byte{1, 3, 4, 5, 0}, s2: "\xff", topK: 1, reqNames: "hour,mobile", kinds: hm, explain: true, mode: modelFails},
		{ranker: "reco", ctxKind: 2, id: 1, s: "u1", spec: []byte{3}, topK: 1, reqNames: "hour,mobile", kinds: hm},
		{ranker: "reco", ctxKind: 0, id: 1, spec: []byte{3}, topK: 1},
		{ranker: "reco", ctxKind: 3, id: 1, spec: []byte{3}, topK: 1},
		{ranker: "reco", ctxKind: 1, id: 1, spec: []byte{3}, topK: -1, reqNames: "hour,mobile", kinds: hm},
		{ranker: "reco", ctxKind: 1, id: 1, spec: []byte{3}, topK: 1, reqNames: "hour,mobile,other", kinds: []byte{1, 4, 1}},
		{ranker: "reco", ctxKind: 1, id: 1, spec: []byte{3}, topK: 1, reqNames: "hour", kinds: []byte{2}, x: 0.5},
		{ranker: "reco", ctxKind: 1, id: 1, spec: []byte{3}, topK: 1, reqNames: "hour,mobile", kinds: hm, n: 9007199254740993},
		{ranker: "reco", ctxKind: 1, id: 1, spec: []byte{3}, topK: 1, reqNames: "hour,mobile", kinds: []byte{0, 6}},
		{ranker: "reco", ctxKind: 1, id: 1, spec: []byte{3}, topK: 1, reqNames: "hour,mobile", kinds: []byte{5, 7, 8, 9, 10}},
		{ranker: "reco", ctxKind: 1, id: 1, spec: []byte{3}, topK: 1, reqNames: "hour,mobile", kinds: hm, mode: modelNaN},
		{ranker: "reco", ctxKind: 1, id: 1, spec: []byte{3}, topK: 1, reqNames: "hour,mobile", kinds: hm, mode: modelUnavailable},
		{ranker: "reco", ctxKind: 1, id: 1, spec: []byte{3}, topK: 1, reqNames: "hour,mobile", kinds: hm, mode: modelOverloaded},
		{ranker: "reco", ctxKind: 1, id: 1, spec: []byte{3}, topK: 1, reqNames: "hour,mobile", kinds: hm, cancelled: true},
		{ranker: "reco", ctxKind: 1, id: 1, spec: make([]byte, testMaxCandidates+1), reqNames: "hour,mobile", kinds: hm},
		{ranker: "", ctxKind: 1, id: 1, spec: []byte{3}},
		{ranker: "nope\xff", ctxKind: 1, id: 1, spec: []byte{3}},
	} {
		f.Add(sd.ranker, sd.ctxKind, sd.id, sd.s, sd.spec, sd.s2, sd.topK, sd.reqNames, sd.kinds, sd.n, sd.x, sd.explain, sd.mode, sd.cancelled)
	}
	fz := newFuzzServer(f)
	f.Fuzz(func(t *testing.T, ranker string, ctxKind uint8, id int64, s string, spec []byte, s2 string, topK int32,
		reqNames string, kinds []byte, n int64, x float64, explain bool, mode uint8, cancel bool) {
		ctx := context.Background()
		if cancel {
			c, stop := context.WithCancel(ctx)
			stop()
			ctx = c
		}
		req := &larderv1.RankRequest{Ranker: ranker, TopK: topK, Explain: explain, CandidateKeys: fuzzKeys(spec, id, s, s2)}
		switch ctxKind % 4 {
		case 1:
			req.ContextKey = intKey(id)
		case 2:
			req.ContextKey = strKey(s)
		case 3:
			req.ContextKey = &larderv1.EntityKey{}
		}
		if names := splitRefs(reqNames); len(names) > 0 {
			req.RequestFeatures = make(map[string]*larderv1.Value, len(names))
			for j, name := range names {
				var k byte = 1
				if len(kinds) > 0 {
					k = kinds[j%len(kinds)]
				}
				req.RequestFeatures[name] = fuzzValue(k, n, x, s)
			}
		}
		fz.model.mode = mode % modelModes
		allowed := []codes.Code{codes.InvalidArgument}
		if fz.model.mode == modelOverloaded {
			allowed = append(allowed, codes.ResourceExhausted)
		}
		resp, err := fz.svc.Rank(ctx, req)
		code := checkStatus(t, err, cancel, len(ranker)+len(s)+len(s2)+len(reqNames), allowed...)
		if code != codes.OK {
			return
		}
		checkRank(t, fz, req, resp)
		checkMarshals(t, resp)
	})
}

// checkRank checks a Rank response against its request: at most top_k
// candidates (the ranker's when 0), each one asked for (or stored), in
// descending order of score, degraded exactly when the model failed, and
// explained when asked.
func checkRank(t *testing.T, fz *fuzzServer, req *larderv1.RankRequest, resp *larderv1.RankResponse) {
	t.Helper()
	r := fz.project.Ranker(req.GetRanker())
	topK := int(req.GetTopK())
	if topK == 0 {
		topK = r.TopK
	}
	cands := resp.GetCandidates()
	if len(cands) > topK || len(req.GetCandidateKeys()) > 0 && len(cands) > len(req.GetCandidateKeys()) || len(cands) > testMaxCandidates {
		t.Fatalf("%d candidates for top_k %d and %d candidate keys", len(cands), topK, len(req.GetCandidateKeys()))
	}
	for i, c := range cands {
		if len(req.GetCandidateKeys()) > 0 && !slices.Contains(req.GetCandidateKeys(), c.GetKey()) {
			t.Fatalf("candidate %d, %v, was not asked for", i, c.GetKey())
		}
		if i > 0 && cmp.Compare(c.GetScore(), cands[i-1].GetScore()) > 0 {
			t.Fatalf("candidate %d scores %v, more than the one before it (%v)", i, c.GetScore(), cands[i-1].GetScore())
		}
		if req.GetExplain() != (c.GetExplanation() != nil) {
			t.Fatalf("candidate %d: explanation %v with explain %v", i, c.GetExplanation(), req.GetExplain())
		}
		if e := c.GetExplanation(); e != nil && (len(e.GetInputs()) != len(r.Inputs) || len(e.GetSources()) != len(r.Inputs)) {
			t.Fatalf("candidate %d: explanation of %d inputs and %d sources, want %d", i, len(e.GetInputs()), len(e.GetSources()), len(r.Inputs))
		}
	}
	failed := fz.model.mode == modelFails || fz.model.mode == modelUnavailable
	if len(cands) > 0 && resp.GetDegraded() != failed || resp.GetDegraded() != (resp.GetDegradedReason() != "") {
		t.Fatalf("degraded %v (%q) with model mode %d", resp.GetDegraded(), resp.GetDegradedReason(), fz.model.mode)
	}
}

// FuzzRequestBytes decodes fuzzed bytes as a GetFeatures or Rank request
// with the server's codec, as the server decodes what a client sends, and
// sends what decodes to the handler.
func FuzzRequestBytes(f *testing.F) {
	seed := func(m interface{ MarshalVT() ([]byte, error) }) []byte {
		b, err := m.MarshalVT()
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	f.Add(false, seed(&larderv1.GetFeaturesRequest{Keys: intKeys(1, 2, 3), Features: []string{"user_profile:*", "user_stats:clicks"}}))
	f.Add(false, seed(&larderv1.GetFeaturesRequest{Keys: strKeys("i1", "\xff"), Features: []string{"item_info:*"}}))
	f.Add(false, seed(&larderv1.GetFeaturesRequest{Keys: []*larderv1.EntityKey{{}}, Features: []string{"user_profile:age"}}))
	f.Add(false, []byte{0x0a, 0x00, 0x12, 0x10, 'u', 's', 'e', 'r', '_', 's', 't', 'a', 't', 's', ':', 'c', 'l', 'i', 'c', 'k'}) // an empty key
	f.Add(false, []byte{0x0a, 0x02, 0x08, 0x01, 0x0a, 0x02, 0x08, 0x01})                                                         // no features
	f.Add(false, []byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f})                                                                     // a length past the end
	f.Add(true, seed(&larderv1.RankRequest{Ranker: "reco", ContextKey: intKey(1), CandidateKeys: strKeys("i1", "i2", "i3"),
		RequestFeatures: map[string]*larderv1.Value{"hour": intVal(13), "mobile": boolVal(true)}, TopK: 2, Explain: true}))
	f.Add(true, seed(&larderv1.RankRequest{Ranker: "reco", ContextKey: intKey(3), RequestFeatures: map[string]*larderv1.Value{"hour": intVal(1), "mobile": boolVal(false)}}))
	f.Add(true, seed(&larderv1.RankRequest{Ranker: "reco", ContextKey: intKey(1), RequestFeatures: map[string]*larderv1.Value{"hour": nil}}))
	f.Add(true, []byte{0x22, 0x02, 0x0a, 0x00}) // a request feature with an empty name and no value
	f.Add(true, []byte{0x28, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	fz := newFuzzServer(f)
	var codec server.Codec
	f.Fuzz(func(t *testing.T, rank bool, data []byte) {
		in := mem.BufferSlice{mem.SliceBuffer(data)}
		var err error
		if rank {
			req := &larderv1.RankRequest{}
			if codec.Unmarshal(in, req) != nil {
				return
			}
			fz.model.mode = modelSum
			var resp *larderv1.RankResponse
			if resp, err = fz.svc.Rank(context.Background(), req); err == nil {
				checkRank(t, fz, req, resp)
				checkMarshals(t, resp)
			}
		} else {
			req := &larderv1.GetFeaturesRequest{}
			if codec.Unmarshal(in, req) != nil {
				return
			}
			var resp *larderv1.GetFeaturesResponse
			if resp, err = fz.svc.GetFeatures(context.Background(), req); err == nil {
				checkMarshals(t, resp)
			}
		}
		checkStatus(t, err, false, len(data), codes.InvalidArgument, codes.FailedPrecondition)
	})
}

// FuzzPush decodes fuzzed bytes as a Push request, as the server decodes
// what a client sends, and pushes what decodes: the answer is an outcome
// per row or INVALID_ARGUMENT / RESOURCE_EXHAUSTED / FAILED_PRECONDITION,
// never a crash, and an answer always marshals.
func FuzzPush(f *testing.F) {
	seed := func(m interface{ MarshalVT() ([]byte, error) }) []byte {
		b, err := m.MarshalVT()
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	at := timestamppb.New(time.Date(2026, 5, 1, 11, 0, 0, 0, time.UTC))
	f.Add(seed(&larderv1.PushRequest{View: "item_info", Rows: []*larderv1.PushRow{
		{Key: strKey("i1"), EventTime: at, Values: map[string]*larderv1.Value{"price": {Kind: &larderv1.Value_Float64Value{Float64Value: 3}}}},
		{Key: strKey("i9"), EventTime: at, Values: map[string]*larderv1.Value{"title": {Kind: &larderv1.Value_StringValue{StringValue: "x"}}, "nope": nil}},
		{Key: intKey(4), EventTime: at},
		{Key: strKey("i2")},
	}}))
	f.Add(seed(&larderv1.PushRequest{View: "user_profile", Rows: []*larderv1.PushRow{{Key: intKey(1), EventTime: at,
		Values: map[string]*larderv1.Value{"age": {Kind: &larderv1.Value_Float64Value{Float64Value: 1.5}}, "embedding": {Kind: &larderv1.Value_StringValue{StringValue: "\xff"}}}}}}))
	f.Add(seed(&larderv1.PushRequest{View: "user_recs"}))
	f.Add(seed(&larderv1.PushRequest{View: "nope\xff"}))
	f.Add([]byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f})
	fz := newFuzzServer(f)
	var codec server.Codec
	f.Fuzz(func(t *testing.T, data []byte) {
		req := &larderv1.PushRequest{}
		if codec.Unmarshal(mem.BufferSlice{mem.SliceBuffer(data)}, req) != nil {
			return
		}
		resp, err := fz.svc.Push(context.Background(), req)
		if err == nil {
			if len(resp.GetOutcomes()) != len(req.GetRows()) {
				t.Fatalf("%d outcomes for %d rows", len(resp.GetOutcomes()), len(req.GetRows()))
			}
			checkMarshals(t, resp)
		}
		checkStatus(t, err, false, len(data), codes.InvalidArgument, codes.FailedPrecondition, codes.ResourceExhausted)
	})
}
