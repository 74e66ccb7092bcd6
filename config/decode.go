package config

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"

	"github.com/larder-dev/larder"
)

// The decoder walks the YAML syntax tree itself rather than unmarshalling
// into structs: an unmarshaller stops at the first bad field, and larder
// validate must show every problem. The walk is as strict as
// yaml.Strict with yaml.DisallowUnknownField, and it records where each field
// path is written so that Project.Validate's errors can be placed too.

// decoder turns one larder.yaml into a larder.Project, collecting problems.
type decoder struct {
	file     string
	lookup   func(string) (string, bool)
	problems []Problem
	// at holds, for each field path decoded, the node where its value is
	// written.
	at map[string]ast.Node
	// bad holds the paths of the values that could not be decoded: Validate
	// reports them again (as missing, say), and those reports are dropped.
	bad []string
	// anchors holds the anchors of the file by name, in the order of the file.
	anchors map[string][]*ast.AnchorNode
	// merges counts the merge keys being followed, to bound how deeply
	// merged mappings nest.
	merges int
	// reported holds the paths that Project.Validate's problems were
	// reported at, so that a problem of a generated feature, placed at the
	// field it is generated from, is reported there once.
	reported map[string]bool
	// spoiled holds the names of the views whose features could not all be
	// generated, because an aggregation's window could not be decoded.
	spoiled map[string]bool
	// widths holds the width of each line of the file in runes, without
	// its line break, to keep columns within their lines (see err).
	widths []int
	// start is the line and column of the file's first character that is
	// not blank, a comment or a document marker: the place of a problem
	// whose node has none, such as a lone tag the parser reads as an empty
	// document. It is 0, 0 for a file without content.
	start [2]int
}

// node is one value of the file and the path of the field it sets.
type node struct {
	path string   // "views[2].max_age"
	key  string   // "max_age"; "" for list items
	site ast.Node // where the value is written: positions point here
	val  ast.Node // the value, with anchors, aliases and tags resolved; nil for none
}

// maxAliasDepth bounds the chain of aliases and tags around one value.
const maxAliasDepth = 32

func newDecoder(file string, lookup func(string) (string, bool)) *decoder {
	return &decoder{
		file:     file,
		lookup:   lookup,
		at:       make(map[string]ast.Node),
		anchors:  make(map[string][]*ast.AnchorNode),
		reported: make(map[string]bool),
		spoiled:  make(map[string]bool),
	}
}

// decode parses data and decodes it into a Project. ok is false when the
// file could not be read as a project at all (a YAML syntax error, or a
// document that is not a mapping); the problems say why.
func (d *decoder) decode(data []byte) (p *larder.Project, ok bool) {
	// YAML reads "\r\n" and "\r" as "\n", but the parser counts a "\r\n"
	// inside a quoted value as two lines: line breaks are made "\n" first.
	data = bytes.ReplaceAll(bytes.ReplaceAll(data, []byte("\r\n"), []byte("\n")), []byte("\r"), []byte("\n"))
	d.widths = lineWidths(data)
	d.start = contentStart(data)
	f, err := parser.ParseBytes(data, 0, parser.AllowDuplicateMapKey())
	if err != nil {
		d.syntax(data, err)
		return nil, false
	}
	var body ast.Node
	for i, doc := range f.Docs {
		ast.Walk(anchorCollector(d.anchors), doc)
		if i == 0 {
			body = doc.Body
		} else if i == 1 {
			d.add(doc, "", "a larder.yaml holds one YAML document; remove the second one, which starts here")
		}
	}
	root := d.resolve("", "", body)
	if !isNull(root.val) {
		if _, isMap := root.val.(*ast.MappingNode); !isMap {
			d.problem(root, "want a mapping of project, redis, server, entities, sources, views and rankers; got %s", describe(root.val))
			return nil, false
		}
	}
	return d.project(root), true
}

// anchorCollector records every anchor it visits.
type anchorCollector map[string][]*ast.AnchorNode

func (c anchorCollector) Visit(n ast.Node) ast.Visitor {
	if a, ok := n.(*ast.AnchorNode); ok && a.Name != nil {
		name := a.Name.GetToken().Value
		c[name] = append(c[name], a)
	}
	return c
}

// syntax reports a YAML syntax error. Tabs in indentation get a message of
// their own, for every line that has one, since that is the usual cause and
// the parser's words for it are obscure.
func (d *decoder) syntax(data []byte, err error) {
	line, col, msg := 0, 0, err.Error()
	var ye yaml.Error
	if errors.As(err, &ye) {
		msg = ye.GetMessage()
		if tk := ye.GetToken(); tk != nil && tk.Position != nil {
			line, col = tk.Position.Line, tk.Position.Column
		}
	}
	if strings.Contains(msg, "reserved character") {
		msg += "; put the value in quotes, such as \"@hourly\""
	}
	tabs := tabIndents(data)
	if slices.ContainsFunc(tabs, func(t [2]int) bool { return t[0] == line }) {
		for _, t := range tabs {
			d.problems = append(d.problems, Problem{File: d.file, Line: t[0], Column: t[1],
				Msg: "indented with a tab; YAML indents with spaces only: replace the tab with spaces"})
		}
		return
	}
	d.problems = append(d.problems, Problem{File: d.file, Line: line, Column: col, Msg: "invalid YAML: " + msg})
}

// lineWidths returns the width in runes of each line of data, whose line
// breaks are "\n", as the YAML parser counts columns.
func lineWidths(data []byte) []int {
	lines := strings.Split(string(data), "\n")
	widths := make([]int, len(lines))
	for i, line := range lines {
		widths[i] = utf8.RuneCountInString(line)
	}
	return widths
}

// contentStart returns the line and column of the first character of data
// that is not blank, in a comment or a document marker (--- or ...); 0, 0
// when there is none.
func contentStart(data []byte) [2]int {
	for i, line := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimLeft(line, " \t")
		switch strings.TrimRight(trimmed, " \t") {
		case "", "---", "...":
			continue
		}
		if strings.HasPrefix(trimmed, "#") {
			continue
		}
		return [2]int{i + 1, utf8.RuneCountInString(line[:len(line)-len(trimmed)]) + 1}
	}
	return [2]int{}
}

// tabIndents returns the line and column of the first tab in the indentation
// of every line that has content after its indentation.
func tabIndents(data []byte) [][2]int {
	var out [][2]int
	for i, line := range strings.Split(string(data), "\n") {
		rest := strings.TrimLeft(line, " \t")
		indent := line[:len(line)-len(rest)]
		if tab := strings.IndexByte(indent, '\t'); tab >= 0 && strings.TrimSpace(rest) != "" {
			out = append(out, [2]int{i + 1, tab + 1})
		}
	}
	return out
}

// project decodes the top level of the file.
func (d *decoder) project(root node) *larder.Project {
	p := &larder.Project{}
	for _, f := range d.fields(root, "project", "redis", "server", "timezone", "scheduler", "jobs", "entities", "sources", "views", "rankers", "streams") {
		switch f.key {
		case "project":
			p.Name = d.str(f)
		case "redis":
			d.redis(f, &p.Redis)
		case "server":
			d.server(f, &p.Server)
		case "timezone":
			p.TimeZone = d.str(f)
		case "scheduler":
			d.scheduler(f, &p.Scheduler)
		case "jobs":
			d.jobs(f, &p.Jobs)
		case "entities":
			for _, it := range d.list(f, "entities") {
				p.Entities = append(p.Entities, d.entity(it))
			}
		case "sources":
			for _, it := range d.list(f, "sources") {
				p.Sources = append(p.Sources, d.source(it))
			}
		case "views":
			for _, it := range d.list(f, "views") {
				p.Views = append(p.Views, d.view(it))
			}
		case "rankers":
			for _, it := range d.list(f, "rankers") {
				p.Rankers = append(p.Rankers, d.ranker(it))
			}
		case "streams":
			for _, it := range d.list(f, "streams") {
				p.Streams = append(p.Streams, d.stream(it))
			}
		}
	}
	return p
}

func (d *decoder) stream(n node) *larder.Stream {
	s := &larder.Stream{}
	for _, f := range d.fields(n, "name", "view", "redis_stream", "kafka", "group", "key", "event_time", "fields", "dead_letter") {
		switch f.key {
		case "name":
			s.Name = d.str(f)
		case "view":
			s.View = d.str(f)
		case "redis_stream":
			s.RedisStream = d.str(f)
			if s.RedisStream == "" && !d.isBad(f.path) {
				d.problem(f, "is empty: write the key of the Redis stream")
			}
		case "kafka":
			s.Kafka = d.kafka(f)
		case "group":
			s.Group = d.str(f)
		case "key":
			s.Key = d.str(f)
		case "event_time":
			s.EventTime = d.str(f)
		case "dead_letter":
			s.DeadLetter = d.str(f)
		case "fields":
			s.Fields = d.stringMap(f, "feature: field")
		}
	}
	return s
}

// stringMap decodes a mapping of names to strings, such as a stream's
// fields by feature.
func (d *decoder) stringMap(n node, what string) map[string]string {
	if isNull(n.val) {
		return nil
	}
	m, ok := n.val.(*ast.MappingNode)
	if !ok {
		d.problem(n, "want a mapping of %s; got %s", what, describe(n.val))
		return nil
	}
	out := make(map[string]string, len(m.Values))
	for _, mv := range m.Values {
		if mv.Key.IsMergeKey() {
			d.add(mv.Key, child(n.path, "<<"), "merges are not read here: write each pair")
			continue
		}
		key, ok := d.key(n.path, mv.Key)
		if !ok {
			continue
		}
		path := child(n.path, key)
		if _, dup := out[key]; dup {
			d.add(mv.Key, path, "is set twice: keep one")
			continue
		}
		out[key] = d.str(d.resolve(path, key, mv.Value))
	}
	return out
}

func (d *decoder) redis(n node, r *larder.Redis) {
	var env node
	var certNode, keyNode node
	for _, f := range d.fieldsOf(n, settingsSchema(redisFields, "redis", serverFields, "server")) {
		switch f.key {
		case "addresses":
			if quoted := hostPortsOf(f); quoted != "" {
				d.problem(f, "want a list of host:port addresses; got a mapping (YAML reads { } as one, and an unquoted host:port inside it as a host and a port): write a list, quoted: [%s]", quoted)
				break
			}
			for _, it := range d.list(f, "host:port addresses") {
				a := d.hostPort(it)
				if a == "" && !d.isBad(it.path) {
					d.problem(it, "is empty: write host:port, such as 127.0.0.1:6379")
				}
				r.Addrs = append(r.Addrs, a)
			}
		case "master_name":
			r.MasterName = d.str(f)
		case "username":
			r.Username = d.str(f)
		case "password":
			r.Password = d.str(f)
		case "password_env":
			env = f
		case "tls":
			r.TLS = d.boolean(f)
		case "tls_ca_file":
			r.TLSCAFile = d.str(f)
		case "tls_cert_file":
			r.TLSCertFile, certNode = d.str(f), f
		case "tls_key_file":
			r.TLSKeyFile, keyNode = d.str(f), f
		case "tls_server_name":
			r.TLSServerName = d.str(f)
		case "db":
			r.DB = d.integer(f)
		case "grace_period":
			r.GracePeriod = d.duration(f)
		case "allow_eviction":
			r.AllowEviction = d.boolean(f)
		case "push_retention":
			r.PushRetention = d.duration(f)
		}
	}
	switch {
	case r.TLSCertFile != "" && r.TLSKeyFile == "":
		d.problem(certNode, "needs tls_key_file too: the key of the client certificate")
	case r.TLSKeyFile != "" && r.TLSCertFile == "":
		d.problem(keyNode, "needs tls_cert_file too: the client certificate of the key")
	}
	if r.TLSCAFile != "" || r.TLSCertFile != "" || r.TLSServerName != "" {
		r.TLS = true
	}
	name := d.str(env)
	switch {
	case name == "":
	case r.Password != "":
		d.problem(env, "set either redis.password or redis.password_env, not both")
	case !envName(name):
		d.notEnvName(env, "password")
	default:
		pw, ok := d.lookup(name)
		if !ok {
			d.problem(env, "environment variable %s is not set: set it in larder's environment, or remove password_env", name)
		}
		r.Password, r.PasswordEnv = pw, name
	}
}

func (d *decoder) entity(n node) *larder.Entity {
	e := &larder.Entity{}
	for _, f := range d.fields(n, "name", "key", "type") {
		switch f.key {
		case "name":
			e.Name = d.str(f)
		case "key":
			e.Key = d.str(f)
		case "type":
			e.KeyType = d.typeOf(f, "entity keys are int64 or string")
		}
	}
	return e
}

func (d *decoder) source(n node) *larder.Source {
	s := &larder.Source{}
	for _, f := range d.fields(n, "name", "path", "event_time") {
		switch f.key {
		case "name":
			s.Name = d.str(f)
		case "path":
			s.Path = d.str(f)
		case "event_time":
			s.EventTime = d.str(f)
		}
	}
	return s
}

func (d *decoder) feature(n node) larder.Feature {
	var ft larder.Feature
	for _, f := range d.fields(n, "name", "type", "column", "cast") {
		switch f.key {
		case "name":
			ft.Name = d.str(f)
		case "type":
			ft.Type = d.typ(f)
		case "column":
			ft.Column = d.str(f)
		case "cast":
			ft.Cast = d.boolean(f)
		}
	}
	return ft
}

func (d *decoder) ranker(n node) *larder.Ranker {
	r := &larder.Ranker{}
	for _, f := range d.fields(n, "name", "model", "model_input", "model_output", "context", "candidate", "top_k", "inputs", "candidates_from", "model_timeout", "batching") {
		switch f.key {
		case "name":
			r.Name = d.str(f)
		case "model":
			r.Model = d.str(f)
		case "model_input":
			r.ModelInput = d.str(f)
		case "model_output":
			r.ModelOutput = d.str(f)
		case "context":
			r.Context = d.str(f)
		case "candidate":
			r.Candidate = d.str(f)
		case "top_k":
			r.TopK = d.integer(f)
		case "inputs":
			for _, it := range d.list(f, "inputs (view:feature or request:name)") {
				r.Inputs = append(r.Inputs, d.rankerInput(it))
			}
		case "candidates_from":
			r.CandidatesFrom = d.str(f)
		case "batching":
			r.Batching = d.batching(f)
		case "model_timeout":
			r.ModelTimeout = d.duration(f)
			if r.ModelTimeout < 0 {
				d.problem(f, "must be positive: how long one run of the model may take, such as 100ms")
			}
		}
	}
	return r
}

// batching decodes a ranker's batching settings; it returns nil for a null
// value (no batching). Fields left out stay zero for SetDefaults to fill; a
// zero or negative value written out is a problem.
func (d *decoder) batching(n node) *larder.Batching {
	if isNull(n.val) {
		return nil
	}
	b := &larder.Batching{}
	for _, f := range d.fields(n, "max_delay", "max_rows", "max_queue") {
		switch f.key {
		case "max_delay":
			b.MaxDelay = d.duration(f)
			if b.MaxDelay <= 0 && !d.isBad(f.path) {
				d.problem(f, "must be positive: the longest a request waits for others to join its model run, such as 2ms")
			}
		case "max_rows":
			b.MaxRows = d.integer(f)
			if b.MaxRows <= 0 && !d.isBad(f.path) {
				d.problem(f, "must be positive: the most candidates one model run scores, such as 1024")
			}
		case "max_queue":
			b.MaxQueue = d.integer(f)
			if b.MaxQueue <= 0 && !d.isBad(f.path) {
				d.problem(f, "must be positive: the most requests that may wait for a model run, such as 64")
			}
		}
	}
	return b
}

// input decodes an input of a prediction view: "view:feature", or
// {ref: view:feature, default: 0.5}.
func (d *decoder) input(n node) larder.RankerInput { return d.inputOf(n, false) }

// rankerInput decodes an input of a ranker: the forms of input, and the type
// of a request input, as in {ref: request:hour, type: int64, default: 12}.
func (d *decoder) rankerInput(n node) larder.RankerInput { return d.inputOf(n, true) }

// requestTypes says which types a request input takes, for the message about
// an unknown type name.
const requestTypes = "a request feature is int64, float32, float64 or bool"

// inputOf decodes an input; typed says whether it may have a type. A default
// written as null counts as none. Whether the type fits the reference, and
// the default the type, is checked by Project.Validate.
func (d *decoder) inputOf(n node, typed bool) larder.RankerInput {
	var in larder.RankerInput
	if _, long := n.val.(*ast.MappingNode); !long {
		in.Ref = d.str(n)
		return in
	}
	known := []string{"ref", "default"}
	if typed {
		known = append(known, "type")
	}
	var def node
	for _, f := range d.fields(n, known...) {
		switch f.key {
		case "ref":
			in.Ref = d.str(f)
		case "type":
			in.Type = d.typeOf(f, requestTypes)
		case "default":
			def = f
		}
	}
	if def.key == "" || isNull(def.val) {
		return in
	}
	in.HasDefault = true
	if b, ok := def.val.(*ast.BoolNode); ok {
		if in.Type == larder.TypeBool {
			if b.Value {
				in.Default = 1
			}
		} else {
			d.problem(def, "want a number; true and false are the defaults of a request input of type bool only")
		}
		return in
	}
	x := d.number(def)
	if math.Abs(x) > math.MaxFloat32 {
		d.problem(def, "%v is out of the range of a float32", x)
		x = 0
	}
	in.Default = float32(x)
	return in
}

// resolve returns the node for the value written at site, following anchors,
// aliases and tags, and reports what stops it.
func (d *decoder) resolve(path, key string, site ast.Node) node {
	if _, seen := d.at[path]; !seen {
		d.at[path] = site
	}
	n := node{path: path, key: key, site: site}
	val, bad := d.follow(site)
	if bad != "" {
		d.problem(n, "%s", bad)
	}
	n.val = val
	return n
}

// follow returns the value written at site with anchors, aliases and tags
// followed. When one cannot be followed it returns nil and says why.
func (d *decoder) follow(site ast.Node) (val ast.Node, bad string) {
	val = site
	for range maxAliasDepth {
		switch v := val.(type) {
		case *ast.AnchorNode:
			val = v.Value
		case *ast.AliasNode:
			a := d.anchor(v)
			if a == nil {
				name := v.Value.GetToken().Value
				return nil, fmt.Sprintf("unknown alias *%s: define the anchor &%s above it", name, name)
			}
			val = a.Value
		case *ast.TagNode:
			switch tag := v.Start.Value; tag {
			case "!!str":
				if s, ok := v.Value.(ast.ScalarNode); ok && s.GetToken() != nil {
					val = ast.String(s.GetToken())
					continue
				}
			case "!!int", "!!float", "!!bool", "!!null", "!!map", "!!seq":
			default:
				return nil, fmt.Sprintf("unsupported tag %s: remove it", tag)
			}
			val = v.Value
		default:
			return val, ""
		}
	}
	return nil, "aliases nested too deeply"
}

// anchor returns the anchor an alias refers to: the last one of its name
// before it in the file, or nil.
func (d *decoder) anchor(alias *ast.AliasNode) *ast.AnchorNode {
	name := alias.Value.GetToken().Value
	at := alias.GetToken().Position.Offset
	var found *ast.AnchorNode
	for _, a := range d.anchors[name] {
		if a.GetToken().Position.Offset < at {
			found = a
		}
	}
	return found
}

// schema is the set of fields a mapping takes.
type schema struct {
	known []string
	// of names the mapping in the list of known fields that an unknown
	// field's message ends with, such as "a latest view": "(fields of a
	// latest view: ...)". Empty means "(fields here: ...)".
	of string
	// misplaced, when set, says why a field the mapping does not take is
	// wrong here, such as a field of another kind of view; "" means the field
	// is simply unknown.
	misplaced func(key string) string
}

// fields returns the fields of mapping n that are in known, explicit ones
// first, then those merged in with "<<". It reports unknown and repeated
// fields, and anything that is not a mapping. At the top level, fields named
// x-something are ignored, so that they can hold anchors.
func (d *decoder) fields(n node, known ...string) []node {
	return d.fieldsOf(n, schema{known: known})
}

// fieldsOf is fields for the fields of sch.
func (d *decoder) fieldsOf(n node, sch schema) []node {
	if isNull(n.val) {
		return nil
	}
	if _, ok := n.val.(*ast.MappingNode); !ok {
		d.problem(n, "want a mapping of %s; got %s", strings.Join(sch.known, ", "), describe(n.val))
		return nil
	}
	return d.mappingFields(n, sch, make(map[string]ast.Node), make(map[*ast.MappingNode]bool))
}

// mappingFields returns the fields of mapping n.val, and of the mappings it
// merges, that seen (field name → its key) does not hold yet, and adds them
// to seen. merged holds the mappings read so far: true while their merges
// are being followed, false once done. A mapping merged twice is read once,
// so that merges cost time in proportion to the file, and a mapping that
// merges itself is an error.
func (d *decoder) mappingFields(n node, sch schema, seen map[string]ast.Node, merged map[*ast.MappingNode]bool) []node {
	m := n.val.(*ast.MappingNode)
	merged[m] = true
	defer func() { merged[m] = false }()
	var out []node
	explicit := make(map[string]ast.Node) // field name → its key, for repeats
	for _, mv := range m.Values {
		if mv.Key.IsMergeKey() {
			continue
		}
		key, ok := d.key(n.path, mv.Key)
		if !ok {
			continue
		}
		path := child(n.path, key)
		if first := explicit[key]; first != nil {
			line, _ := position(first)
			d.add(mv.Key, path, fmt.Sprintf("is set twice (first on line %d): keep one", line))
			continue
		}
		explicit[key] = mv.Key
		if !slices.Contains(sch.known, key) {
			if n.path == "" && strings.HasPrefix(key, "x-") {
				continue
			}
			d.unknown(path, mv.Key, key, sch)
			continue
		}
		if seen[key] != nil {
			continue // set in a mapping that merges this one, which wins
		}
		seen[key] = mv.Key
		out = append(out, d.resolve(path, key, mv.Value))
	}
	for _, mv := range m.Values {
		if !mv.Key.IsMergeKey() {
			continue
		}
		mpath := child(n.path, "<<")
		if d.merges >= maxAliasDepth {
			d.add(mv.Key, mpath, fmt.Sprintf("merges nested more than %d deep: merge fewer levels", maxAliasDepth))
			continue
		}
		for _, src := range d.mergeSources(d.resolve(mpath, "<<", mv.Value)) {
			sm := src.val.(*ast.MappingNode)
			active, read := merged[sm]
			if active {
				msg := "merges a mapping that merges this one back: remove the cycle"
				if sm == m {
					msg = "merges the mapping it is in: remove the merge"
				}
				d.add(mv.Key, mpath, msg)
				break
			}
			if read {
				continue
			}
			d.merges++
			out = append(out, d.mappingFields(node{path: n.path, site: src.site, val: sm}, sch, seen, merged)...)
			d.merges--
		}
	}
	return out
}

// mergeSources returns the mappings a merge key ("<<") names: one mapping or
// a list of them.
func (d *decoder) mergeSources(n node) []node {
	switch v := n.val.(type) {
	case *ast.MappingNode:
		return []node{n}
	case *ast.SequenceNode:
		var out []node
		for i, it := range v.Values {
			m := d.resolve(index(n.path, i), "", it)
			if _, ok := m.val.(*ast.MappingNode); !ok {
				d.problem(m, "want a mapping to merge, such as *defaults; got %s", describe(m.val))
				continue
			}
			out = append(out, m)
		}
		return out
	}
	d.problem(n, "want a mapping to merge, such as *defaults, or a list of them; got %s", describe(n.val))
	return nil
}

// key returns the name of a mapping key, reporting keys that are not plain names.
func (d *decoder) key(parent string, k ast.MapKeyNode) (string, bool) {
	switch k := k.(type) {
	case *ast.StringNode:
		return k.Value, true
	case ast.ScalarNode:
		if tk := k.GetToken(); tk != nil {
			return tk.Value, true
		}
	}
	d.add(k, parent, "field names must be plain words, such as name")
	return "", false
}

// unknown reports a field that sch does not take, and the fields allowed in
// its place.
func (d *decoder) unknown(path string, k ast.Node, key string, sch schema) {
	list := "fields here"
	if sch.of != "" {
		list = "fields of " + sch.of
	}
	list += ": " + strings.Join(sch.known, ", ")
	if sch.misplaced != nil {
		if why := sch.misplaced(key); why != "" {
			d.add(k, path, why+" ("+list+")")
			return
		}
	}
	msg := fmt.Sprintf("unknown field %q", key)
	if s := larder.Suggest(key, sch.known); s != "" {
		msg += fmt.Sprintf("; did you mean %q?", s)
	}
	d.add(k, path, msg+" ("+list+")")
}

// list returns the items of list n; none when n is empty or null.
func (d *decoder) list(n node, what string) []node {
	if isNull(n.val) {
		return nil
	}
	s, ok := n.val.(*ast.SequenceNode)
	if !ok {
		d.problem(n, "want a list of %s (items starting with \"- \", or [a, b]); got %s", what, describe(n.val))
		return nil
	}
	out := make([]node, len(s.Values))
	for i, it := range s.Values {
		out[i] = d.resolve(index(n.path, i), "", it)
	}
	return out
}

// str returns the text of a scalar. Numbers and booleans are taken as
// written, so that a password of digits needs no quotes; null is "".
func (d *decoder) str(n node) string {
	s, ok := text(n.val)
	if !ok {
		d.problem(n, "want a string; got %s", describe(n.val))
	}
	return s
}

// hostPort returns the text of a host:port address. YAML reads an unquoted
// "host: port", and inside { } even "host:port", as a mapping of host to
// port: such a mapping is reported with the quoted string to write instead.
func (d *decoder) hostPort(n node) string {
	if m, ok := n.val.(*ast.MappingNode); ok && len(m.Values) == 1 {
		host, hok := text(m.Values[0].Key)
		port, pok := text(m.Values[0].Value)
		if hok && pok && host != "" && port != "" {
			d.problem(n, "want a host:port address; got a mapping of %s to %s (YAML reads an unquoted host:port as one here): write it quoted: %q",
				host, port, host+":"+port)
			return ""
		}
	}
	return d.str(n)
}

// broker returns the host:port address of a Kafka broker, reporting one
// without a host or a port.
func (d *decoder) broker(n node) string {
	a := d.hostPort(n)
	if d.isBad(n.path) {
		return a
	}
	host, port, err := net.SplitHostPort(a)
	if err == nil && host != "" && port != "" {
		return a
	}
	if err != nil {
		host = strings.Trim(a, "[]")
	}
	if host == "" {
		d.problem(n, "want host:port, such as \"kafka-1:9092\"; got %q: write the broker's host too", a)
		return a
	}
	d.problem(n, "want host:port, such as %q; got %q: write the broker's port too (9092 unless the broker listens on another)",
		net.JoinHostPort(host, "9092"), a)
	return a
}

// hostPortsOf returns, for a mapping of hosts to ports, such as YAML reads
// {127.0.0.1:6379}, the addresses it means, each quoted and separated by
// commas; "" for anything else.
func hostPortsOf(n node) string {
	m, ok := n.val.(*ast.MappingNode)
	if !ok || len(m.Values) == 0 {
		return ""
	}
	var quoted []string
	for _, kv := range m.Values {
		host, hok := text(kv.Key)
		port, pok := text(kv.Value)
		if !hok || !pok || host == "" || port == "" {
			return ""
		}
		quoted = append(quoted, strconv.Quote(host+":"+port))
	}
	return strings.Join(quoted, ", ")
}

// text returns the text of a scalar value as str reads it; ok is false when
// val is not a scalar that reads as a string.
func text(val ast.Node) (s string, ok bool) {
	switch v := val.(type) {
	case nil, *ast.NullNode:
		return "", true
	case *ast.StringNode:
		return v.Value, true
	case *ast.LiteralNode:
		return v.Value.Value, true
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.InfinityNode, *ast.NanNode:
		return v.GetToken().Value, true
	}
	return "", false
}

func (d *decoder) integer(n node) int {
	switch v := n.val.(type) {
	case nil, *ast.NullNode:
		return 0
	case *ast.IntegerNode:
		switch x := v.Value.(type) {
		case int64:
			if x >= math.MinInt && x <= math.MaxInt {
				return int(x)
			}
		case uint64:
			if x <= math.MaxInt {
				return int(x)
			}
		}
		d.problem(n, "%s is too large", v.GetToken().Value)
		return 0
	}
	d.problem(n, "want a whole number; got %s", describe(n.val))
	return 0
}

func (d *decoder) number(n node) float64 {
	switch v := n.val.(type) {
	case nil, *ast.NullNode:
		return 0
	case *ast.IntegerNode:
		switch x := v.Value.(type) {
		case int64:
			return float64(x)
		case uint64:
			return float64(x)
		}
	case *ast.FloatNode:
		return v.Value
	}
	d.problem(n, "want a number; got %s", describe(n.val))
	return 0
}

func (d *decoder) boolean(n node) bool {
	switch v := n.val.(type) {
	case nil, *ast.NullNode:
		return false
	case *ast.BoolNode:
		return v.Value
	}
	d.problem(n, "want true or false; got %s", describe(n.val))
	return false
}

func (d *decoder) duration(n node) time.Duration {
	switch n.val.(type) {
	case nil, *ast.NullNode:
		return 0
	case *ast.MappingNode, *ast.SequenceNode:
		d.problem(n, "want a duration such as 90s, 48h or 7d; got %s", describe(n.val))
		return 0
	}
	s := d.str(n)
	v, err := parseDuration(s)
	if err != nil {
		d.problem(n, "%v", err)
	}
	return v
}

// size decodes a size in bytes, such as 65536, 64KiB or 1MiB. A size
// written out must be positive; left out, it stays zero for SetDefaults to
// fill. How large it may be is Project.Validate's to say.
func (d *decoder) size(n node) int {
	switch v := n.val.(type) {
	case nil, *ast.NullNode:
		return 0
	case *ast.MappingNode, *ast.SequenceNode:
		d.problem(n, "want a size such as 65536, 64KiB or 1MiB; got %s", describe(n.val))
		return 0
	case *ast.IntegerNode:
		size := d.integer(n)
		if size <= 0 && !d.isBad(n.path) {
			d.problem(n, "must be positive, got %s: the most bytes one value may take, such as 65536 or 64KiB", v.GetToken().Value)
		}
		return size
	}
	size, err := parseSize(d.str(n))
	if err != nil {
		d.problem(n, "%v", err)
	}
	return size
}

// policy decodes a value policy (reject, null or keep). YAML reads an
// unquoted null as no value at all; here it is the policy of that name.
// Which policies the field takes is Project.Validate's to say.
func (d *decoder) policy(n node) larder.ValuePolicy {
	if isNull(n.val) {
		return larder.PolicyNull
	}
	switch n.val.(type) {
	case *ast.MappingNode, *ast.SequenceNode:
		d.problem(n, "want a policy: reject, null or keep; got %s", describe(n.val))
		return ""
	}
	return larder.ValuePolicy(d.str(n))
}

func (d *decoder) schedule(n node) string {
	s := d.str(n)
	if s != "" {
		if err := checkSchedule(s); err != nil {
			d.problem(n, "%v", err)
		}
	}
	return s
}

func (d *decoder) typ(n node) larder.Type {
	return d.typeOf(n, "")
}

// typeOf decodes a type name. want, when set, says which types the field
// takes, for the message about an unknown name; by default it lists every
// type.
func (d *decoder) typeOf(n node, want string) larder.Type {
	s := d.str(n)
	if s == "" {
		return larder.TypeInvalid
	}
	t, err := larder.ParseType(s)
	if err != nil {
		if want == "" {
			d.problem(n, "%v", err)
		} else {
			d.problem(n, "unknown type %q (%s)", s, want)
		}
	}
	return t
}

// problem reports that the value of n is wrong, and marks its path as bad.
func (d *decoder) problem(n node, format string, args ...any) {
	d.bad = append(d.bad, n.path)
	d.add(n.site, n.path, fmt.Sprintf(format, args...))
}

// add reports a problem at the position of site.
func (d *decoder) add(site ast.Node, field, msg string) {
	line, col := position(site)
	d.problems = append(d.problems, Problem{File: d.file, Line: line, Column: col, Field: field, Msg: msg})
}

// fieldError reports a problem found by Project.Validate at the place its
// path is written, unless decoding already reported the value at that path.
// A problem of a feature that p generates (for an aggregate or a candidates
// view) is reported at the field the feature is generated from, once. An
// input naming a feature of a view whose features could not all be
// generated is not reported: the view's own problem is; nor are the
// features an aggregation generates twice because it repeats a window or a
// function, nor a comparison of two settings one of which could not be
// decoded (see comparesBad).
func (d *decoder) fieldError(p *larder.Project, fe *larder.FieldError) {
	path := fe.Path
	if from, ok := generatedFrom(p, path); ok {
		if from == "" || d.reported[from] {
			return
		}
		path = from
	}
	if d.isBad(path) || d.comparesBad(path) || d.followsSpoiled(p, path) || repeatsItself(p, path) || d.transportBad(path) {
		return
	}
	d.reported[path] = true
	d.add(d.site(path), path, fe.Msg)
}

// transportBad reports whether path is a stream (exactly, not a field of
// it) whose redis_stream or kafka was written but could not be decoded:
// Project.Validate reports that the stream reads neither, a follow-on.
func (d *decoder) transportBad(path string) bool {
	if _, rest, ok := indexed(path, "streams"); !ok || rest != "" {
		return false
	}
	return d.isBad(path+".redis_stream") || d.isBad(path+".kafka")
}

// isBad reports whether path is, or is inside, a value that failed to decode.
func (d *decoder) isBad(path string) bool {
	for _, b := range d.bad {
		if path == b || strings.HasPrefix(path, b) && (b == "" || path[len(b)] == '.' || path[len(b)] == '[') {
			return true
		}
	}
	return false
}

// site returns where the field at path is written or, for a field left out,
// where the closest enclosing one is.
func (d *decoder) site(path string) ast.Node {
	for {
		if n, ok := d.at[path]; ok {
			return n
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			return d.at[""]
		}
		path = path[:i]
	}
}

// position returns the line and column where n starts; 0, 0 when unknown.
// A block mapping starts at its first key.
func position(n ast.Node) (line, col int) {
	switch v := n.(type) {
	case nil:
		return 0, 0
	case *ast.MappingNode:
		if !v.IsFlowStyle && len(v.Values) > 0 {
			return position(v.Values[0].Key)
		}
	case *ast.MappingValueNode:
		return position(v.Key)
	case *ast.DocumentNode:
		if v.Start == nil {
			return position(v.Body)
		}
		return v.Start.Position.Line, v.Start.Position.Column
	}
	tk := n.GetToken()
	if tk == nil || tk.Position == nil {
		return 0, 0
	}
	return tk.Position.Line, tk.Position.Column
}

// describe names a value for a message: a scalar as written, or its kind.
func describe(n ast.Node) string {
	switch v := n.(type) {
	case nil, *ast.NullNode:
		return "nothing"
	case *ast.MappingNode:
		return "a mapping"
	case *ast.SequenceNode:
		return "a list"
	case *ast.StringNode:
		return strconv.Quote(v.Value)
	case *ast.LiteralNode:
		return "a block of text"
	}
	if tk := n.GetToken(); tk != nil {
		return tk.Value
	}
	return n.Type().String()
}

func isNull(n ast.Node) bool {
	switch n.(type) {
	case nil, *ast.NullNode:
		return true
	}
	return false
}

func child(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func index(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}
