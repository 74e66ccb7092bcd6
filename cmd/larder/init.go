package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/config"
	"github.com/larder-dev/larder/materializer"
)

func (a *app) initCommand() *cobra.Command {
	var o initOptions
	cmd := &cobra.Command{
		Use:   "init FILE_OR_GLOB...",
		Short: "Write a starter larder.yaml from the columns of your Parquet files",
		Long: `init reads the footers of Parquet data sets (each argument a file, a folder
of .parquet files or a quoted glob such as "data/events/*.parquet"), prints
their columns with their Parquet types and the larder types they can feed,
and writes a commented starter project file: the -c/--config path
(larder.yaml here) unless --out names another, or - for standard output.
It never overwrites a file: --force replaces one.

What it guesses, for you to check and edit:
  - one source per argument, with its path relative to the project file's
    folder; files of one folder with the same columns become one source;
  - each source's event time: a TIMESTAMP or DATE column, preferring
    event_time, ts, timestamp, updated_at and created_at;
  - entities from key-like columns (id, or a name ending in _id; INT64,
    INT32 or STRING): the first one of each source is its key;
  - one latest view per source, of its other columns, each with the larder
    type it reads as; a column no type reads is left out, with why.

The file validates as written ("larder validate" opens the data too), and
"larder materialize" runs it on the embedded store. Next, set each view's
max_age and schedule, rename what clients will ask for, and add aggregate
views over events: the file says where.`,
		Example: `  larder init data/users.parquet data/events
  larder init --out shop.yaml "data/*.parquet"`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.out = orDefault(o.out, a.configPath)
			return a.runInit(args, o)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.out, "out", "o", "", "the file to write, - for standard output (default: the -c/--config path)")
	f.BoolVar(&o.force, "force", false, "replace the file if it exists")
	f.StringVar(&o.project, "project", "", "the project's name (default: the name of the file's folder)")
	return cmd
}

// orDefault returns s, or def when s is empty.
func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

type initOptions struct {
	out     string
	force   bool
	project string
}

func (a *app) runInit(args []string, o initOptions) error {
	toStdout := o.out == "-"
	dir := "."
	if !toStdout {
		dir = filepath.Dir(o.out)
		if _, err := os.Stat(o.out); err == nil && !o.force {
			return fmt.Errorf("%s already exists, and init does not overwrite a project file: write another with --out PATH, or replace it with --force", o.out)
		}
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			return fmt.Errorf("--out %s: folder %s does not exist: create it first", o.out, dir)
		}
	}
	absDir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}

	sets, err := readSets(args)
	if err != nil {
		return err
	}
	plan := planProject(sets, absDir, o.project)

	list := a.stdout
	if toStdout {
		list = a.stderr // standard output carries the file
	}
	plan.printColumns(list)

	data := plan.yaml()
	// The file must validate as written, data included: check it as
	// validate would before writing it, from where it will be.
	name := o.out
	if toStdout {
		name = filepath.Join(absDir, "larder.yaml")
	}
	p, err := config.Parse(name, data)
	if err == nil {
		for _, sp := range materializer.CheckSources(p) {
			err = errors.Join(err, sp)
		}
	}
	if err != nil {
		return fmt.Errorf("the project file written from these columns does not validate, which is a bug of larder init; please report it with the column listing above: %w", err)
	}

	if toStdout {
		_, err := a.stdout.Write(data)
		return err
	}
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if o.force {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(o.out, flags, 0o644)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s already exists, and init does not overwrite a project file: write another with --out PATH, or replace it with --force", o.out)
	}
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Fprintf(list, "\nwrote %s: %s\n", o.out, plan.summary())
	flag := ""
	if o.out != "larder.yaml" {
		flag = " -c " + o.out
	}
	fmt.Fprintf(list, "next: read it, fix what was guessed wrong, set max_age and schedule, then `larder%s validate` and `larder%s materialize`\n", flag, flag)
	return nil
}

// fileSet is one source-to-be: a path as a source names it (a file, a
// folder or a glob) and its columns.
type fileSet struct {
	path   string
	schema *materializer.Schema
	// plain is set when path names one file.
	plain bool
}

// readSets reads the schema of every argument. Files of one folder named
// one by one (as a shell expands data/events/*.parquet) that have the same
// columns become one set: their folder, or a glob, when it names exactly
// them.
func readSets(args []string) ([]*fileSet, error) {
	var sets []*fileSet
	seen := map[string]bool{}
	for _, arg := range args {
		if seen[arg] {
			continue
		}
		seen[arg] = true
		s, err := materializer.ReadSchema(arg)
		if err != nil {
			return nil, fmt.Errorf("init reads Parquet files: %w", err)
		}
		if agree(s) {
			sets = append(sets, &fileSet{path: arg, schema: s, plain: plainFile(arg)})
			continue
		}
		// A folder or glob of files with different columns (a quoted
		// data/*.parquet): a set per file, merged back by columns below.
		for _, file := range s.Files {
			fs, err := materializer.ReadSchema(file)
			if err != nil {
				return nil, fmt.Errorf("init reads Parquet files: %w", err)
			}
			sets = append(sets, &fileSet{path: file, schema: fs, plain: true})
		}
	}
	return mergeSets(sets), nil
}

// agree reports whether every file of s has every column, of one type.
func agree(s *materializer.Schema) bool {
	for _, c := range s.Columns {
		if c.Files < len(s.Files) || (len(c.Types) == 0 && !c.EventTime && c.Unfit == materializer.UnfitDisagree) {
			return false
		}
	}
	return true
}

// mergeSets folds plain files of one folder with the same columns into one
// set, where a path names exactly them.
func mergeSets(sets []*fileSet) []*fileSet {
	type group struct {
		at    int
		files []*fileSet
	}
	groups := map[string]*group{}
	var order []string
	for i, s := range sets {
		key := fmt.Sprintf("%d", i)
		if s.plain {
			key = filepath.Dir(s.path) + "\x00" + signature(s.schema)
		}
		g := groups[key]
		if g == nil {
			g = &group{at: i}
			groups[key] = g
			order = append(order, key)
		}
		g.files = append(g.files, s)
	}
	var out []*fileSet
	for _, key := range order {
		g := groups[key]
		if len(g.files) == 1 {
			out = append(out, g.files[0])
			continue
		}
		if merged := mergeFiles(g.files); merged != nil {
			out = append(out, merged)
		} else {
			out = append(out, g.files...)
		}
	}
	return out
}

// mergeFiles returns one set for files when their folder, or a glob of
// their common prefix and suffix, names exactly them; nil otherwise.
func mergeFiles(files []*fileSet) *fileSet {
	var names []string
	for _, f := range files {
		names = append(names, filepath.Clean(f.path))
	}
	slices.Sort(names)
	dir := filepath.Dir(names[0])
	prefix, suffix := filepath.Base(names[0]), filepath.Base(names[0])
	for _, n := range names[1:] {
		b := filepath.Base(n)
		for !strings.HasPrefix(b, prefix) {
			prefix = prefix[:len(prefix)-1]
		}
		for !strings.HasSuffix(b, suffix) {
			suffix = suffix[1:]
		}
	}
	candidates := []string{dir}
	if !strings.ContainsAny(prefix+suffix, "*?[\\") {
		candidates = append(candidates, filepath.Join(dir, prefix+"*"+suffix))
	}
	for _, c := range candidates {
		s, err := materializer.ReadSchema(c)
		if err != nil {
			continue
		}
		got := make([]string, len(s.Files))
		for i, f := range s.Files {
			got[i] = filepath.Clean(f)
		}
		if slices.Equal(got, names) {
			return &fileSet{path: c, schema: s}
		}
	}
	return nil
}

// plainFile reports whether path names a file, not a folder or a glob.
func plainFile(path string) bool {
	if strings.ContainsAny(path, "*?[") {
		return false
	}
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular()
}

// signature identifies a schema's columns and types.
func signature(s *materializer.Schema) string {
	var b strings.Builder
	for _, c := range s.Columns {
		fmt.Fprintf(&b, "%s\x00%s\x00", c.Name, c.Parquet)
	}
	return b.String()
}

// initPlan is the project init writes.
type initPlan struct {
	project  string
	entities []*initEntity
	sources  []*initSource
}

type initEntity struct {
	name, key string
	typ       larder.Type
	from      []string // the sources keyed by it
	note      string
}

type initSource struct {
	set  *fileSet
	name string
	// path is set's path relative to the project file's folder.
	path      string
	eventTime string
	// otherTimes are the other columns that could be the event time.
	otherTimes []string
	entity     *initEntity
	features   []initFeature
	left       []initLeftOut
	// roles says what each column became, for the listing.
	roles map[string]string
	types map[string]larder.Type
}

type initFeature struct {
	name, column string
	typ          larder.Type
	parquet      string
	also         []larder.Type
}

type initLeftOut struct {
	column, why string
}

// eventTimeNames are the names preferred for a source's event time, best
// first.
var eventTimeNames = []string{"event_time", "ts", "timestamp", "event_timestamp", "updated_at", "created_at", "time"}

func planProject(sets []*fileSet, absDir, project string) *initPlan {
	plan := &initPlan{project: project}
	if plan.project == "" {
		plan.project = sanitizeName(filepath.Base(absDir), "project")
	}
	sourceNames := map[string]bool{}
	entityNames := map[string]bool{}
	byKey := map[string]*initEntity{}
	for _, set := range sets {
		src := &initSource{set: set, roles: map[string]string{}, types: map[string]larder.Type{}}
		src.name = uniqueName(sanitizeName(setName(set.path), "source"), sourceNames)
		src.path = set.path
		if abs, err := filepath.Abs(set.path); err == nil {
			if rel, err := filepath.Rel(absDir, abs); err == nil {
				src.path = rel
			}
		}
		src.path = filepath.ToSlash(src.path)

		cols := set.schema.Columns
		var times []string
		for _, c := range cols {
			if c.EventTime {
				times = append(times, c.Name)
			}
		}
		src.eventTime = pickEventTime(times)
		for _, t := range times {
			if t != src.eventTime {
				src.otherTimes = append(src.otherTimes, t)
			}
		}
		if src.eventTime != "" {
			src.roles[src.eventTime] = "event time"
		}

		for _, c := range cols {
			if !keyLike(c.Name) || c.Name == src.eventTime {
				continue
			}
			typ := larder.TypeInvalid
			switch {
			case slices.Contains(c.Types, larder.TypeInt64):
				typ = larder.TypeInt64
			case slices.Contains(c.Types, larder.TypeString):
				typ = larder.TypeString
			default:
				continue
			}
			e := byKey[c.Name]
			if e != nil && e.typ != typ {
				// The same key of another type: an entity of its own,
				// since one entity has one key type.
				e = &initEntity{name: uniqueName(sanitizeName(entityName(c.Name, src.name)+"_"+src.name, "entity"), entityNames), key: c.Name, typ: typ,
					note: fmt.Sprintf("%s is %s here but %s in %s: make the types agree upstream to use one entity", c.Name, typ, byKey[c.Name].typ, byKey[c.Name].from[0])}
				plan.entities = append(plan.entities, e)
			} else if e == nil {
				e = &initEntity{name: uniqueName(sanitizeName(entityName(c.Name, src.name), "entity"), entityNames), key: c.Name, typ: typ}
				byKey[c.Name] = e
				plan.entities = append(plan.entities, e)
			}
			e.from = append(e.from, src.name)
			src.entity = e
			src.types[c.Name] = typ
			src.roles[c.Name] = "key of entity " + e.name
			break
		}

		featureNames := map[string]bool{}
		for _, c := range cols {
			if _, done := src.roles[c.Name]; done {
				continue
			}
			switch {
			case len(c.Types) > 0:
				name := uniqueName(sanitizeName(c.Name, "f"), featureNames)
				types := c.Types
				if c.Parquet == "BYTE_ARRAY" && slices.Contains(types, larder.TypeBytes) {
					// Unannotated: bytes, unless the user knows it is text.
					types = append([]larder.Type{larder.TypeBytes}, slices.DeleteFunc(slices.Clone(types), func(t larder.Type) bool { return t == larder.TypeBytes })...)
				}
				src.features = append(src.features, initFeature{name: name, column: c.Name, typ: types[0], parquet: c.Parquet, also: types[1:]})
				src.types[c.Name] = types[0]
				src.roles[c.Name] = "feature"
			case c.EventTime:
				why := fmt.Sprintf("a time, and the event time is %s: larder has no time feature type; write it as INT64 (such as Unix seconds) to use it as a feature", src.eventTime)
				src.left = append(src.left, initLeftOut{c.Name, why})
				src.roles[c.Name] = "left out: a time (another event time candidate)"
			default:
				src.left = append(src.left, initLeftOut{c.Name, c.Unfit})
				src.roles[c.Name] = "left out: " + c.Unfit
			}
		}
		plan.sources = append(plan.sources, src)
	}
	return plan
}

// pickEventTime returns the best of the columns that can be an event time:
// a preferred name, then a name that says time, then the first.
func pickEventTime(times []string) string {
	for _, want := range eventTimeNames {
		for _, t := range times {
			if strings.EqualFold(t, want) {
				return t
			}
		}
	}
	for _, t := range times {
		l := strings.ToLower(t)
		if strings.HasSuffix(l, "_at") || strings.HasSuffix(l, "_time") || strings.HasSuffix(l, "_ts") {
			return t
		}
	}
	if len(times) > 0 {
		return times[0]
	}
	return ""
}

// keyLike reports whether a column's name looks like a key: id, or ending
// in _id, -id, Id or ID (userId, userID).
func keyLike(name string) bool {
	l := strings.ToLower(name)
	switch {
	case l == "id", strings.HasSuffix(l, "_id"), strings.HasSuffix(l, "-id"):
		return true
	case len(name) > 2 && (strings.HasSuffix(name, "Id") || strings.HasSuffix(name, "ID")):
		c := name[len(name)-3]
		return c >= 'a' && c <= 'z'
	}
	return false
}

// entityName names the entity of a key column: user for user_id; for a
// bare id, the source's name in the singular (user for users).
func entityName(key, source string) string {
	l := strings.ToLower(key)
	switch {
	case l == "id":
		if strings.HasSuffix(source, "s") && !strings.HasSuffix(source, "ss") && len(source) > 3 {
			return source[:len(source)-1]
		}
		return source
	case strings.HasSuffix(l, "_id"), strings.HasSuffix(l, "-id"):
		return strings.ToLower(key[:len(key)-3])
	}
	return strings.ToLower(key[:len(key)-2]) // userId, userID
}

// setName is the name a source takes from its path: the file's name
// without its extension, the folder's name, or the fixed part of a glob's
// last element (its folder's name when there is none).
func setName(path string) string {
	path = filepath.Clean(path)
	base := filepath.Base(path)
	base = strings.TrimSuffix(base, filepath.Ext(base))
	if strings.ContainsAny(base, "*?[") {
		if i := strings.IndexAny(base, "*?["); i > 0 {
			base = base[:i]
		} else {
			base = ""
		}
		base = strings.Trim(base, "-_.")
		if base == "" {
			base = filepath.Base(filepath.Dir(path))
		}
	}
	return base
}

// maxNameLen is the longest name larder accepts but the project's.
const maxNameLen = 128

// sanitizeName turns s into a name larder accepts: letters, digits, '_'
// and '-', starting with a letter (after prefix_ when s does not), at most
// maxNameLen bytes.
func sanitizeName(s, prefix string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	out := b.String()
	if out == "" || !(out[0] >= 'a' && out[0] <= 'z' || out[0] >= 'A' && out[0] <= 'Z') {
		out = prefix + "_" + out
	}
	if len(out) > maxNameLen {
		out = out[:maxNameLen]
	}
	return out
}

// uniqueName returns name, or name_2, name_3... when taken already, and
// marks it taken. "request" and "runs" are taken from the start: larder
// keeps them for itself as view names.
func uniqueName(name string, taken map[string]bool) string {
	reserved := name == larder.RequestPrefix || name == "runs"
	out := name
	for i := 2; taken[out] || (reserved && out == name); i++ {
		suffix := "_" + strconv.Itoa(i)
		out = name[:min(len(name), maxNameLen-len(suffix))] + suffix
	}
	taken[out] = true
	return out
}

// printColumns prints every set's columns: the Parquet type, the larder
// type and what init made of the column.
func (p *initPlan) printColumns(w io.Writer) {
	for i, src := range p.sources {
		if i > 0 {
			fmt.Fprintln(w)
		}
		s := src.set.schema
		fmt.Fprintf(w, "%s: %s, %s (source %s)\n", src.set.path, plural(len(s.Files), "file"), plural(int(s.Rows), "row"), src.name)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  COLUMN\tPARQUET\tLARDER\tUSE")
		for _, c := range s.Columns {
			typ := "-"
			if t, ok := src.types[c.Name]; ok {
				typ = t.String()
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", c.Name, c.Parquet, typ, src.roles[c.Name])
		}
		tw.Flush()
		switch {
		case src.eventTime == "":
			fmt.Fprintf(w, "  no column can be the event time (an INT64 TIMESTAMP or INT32 DATE): the source and its view are written commented out\n")
		case src.entity == nil:
			fmt.Fprintf(w, "  no column looks like a key (id or a name ending in _id, INT64, INT32 or STRING): no view is written for it\n")
		}
	}
}

func plural(n int, what string) string {
	switch {
	case n == 1:
		return "1 " + what
	case strings.HasSuffix(what, "y"):
		return fmt.Sprintf("%d %sies", n, what[:len(what)-1])
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// summary counts what the file declares.
func (p *initPlan) summary() string {
	var sources, views, features, left int
	for _, s := range p.sources {
		if s.eventTime == "" {
			continue
		}
		sources++
		if s.entity != nil && len(s.features) > 0 {
			views++
			features += len(s.features)
			left += len(s.left)
		}
	}
	return fmt.Sprintf("project %s, %s, %s, %s (%s, %s left out)",
		p.project, plural(len(p.entities), "entity"), plural(sources, "source"), plural(views, "latest view"),
		plural(features, "feature"), plural(left, "column"))
}

// yamlString writes s as a YAML scalar: bare when that reads back as the
// same string, double-quoted otherwise.
func yamlString(s string) string {
	plain := s != ""
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.' || r == '/') {
			plain = false
			break
		}
	}
	if plain {
		switch strings.ToLower(s) {
		case "true", "false", "yes", "no", "on", "off", "y", "n", "null", "~":
			plain = false
		}
		if _, err := strconv.ParseFloat(s, 64); err == nil || s[0] == '-' || s[0] == '.' {
			plain = false
		}
	}
	if plain {
		return s
	}
	return strconv.Quote(s)
}

// yaml writes the commented project file of p.
func (p *initPlan) yaml() []byte {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w(`# larder.yaml — a starting point written by "larder init" from the columns of
# %s. It validates as it is; it is yours to edit.
#
# What was guessed, and is worth checking: the entities (from key-like
# columns such as user_id), each source's event-time column, and one latest
# view per source with the rest of its columns. Every feature is commented
# with its column's Parquet type. Then:
#
#   larder validate      # checks this file, then opens the files it names
#   larder materialize   # computes every view into the store
#
# docs/configuration.md documents every field.

project: %s

# No redis section: larder runs an embedded Redis-protocol server inside the
# process, whose data ends with it: enough to try this file. To keep the
# data, and to serve it, add:
#
#   redis:
#     addresses: ["127.0.0.1:6379"]

`, plural(len(p.sources), "data set"), yamlString(p.project))

	w(`# Entities are the kinds of things values are about. Each has a key: the
# column that names it in every source, and its type (int64 or string).
`)
	if len(p.entities) == 0 {
		w("# No column looked like a key (id, or a name ending in _id): declare one, such as\n#   - {name: user, key: user_id, type: int64}\nentities: []\n")
	} else {
		w("entities:\n")
		lines := make([]string, len(p.entities))
		comments := make([]string, len(p.entities))
		for i, e := range p.entities {
			lines[i] = fmt.Sprintf("  - {name: %s, key: %s, type: %s}", e.name, yamlString(e.key), e.typ)
			comments[i] = "the key in " + strings.Join(e.from, ", ")
			if e.note != "" {
				comments[i] += "; " + e.note
			}
		}
		writeAligned(&b, lines, comments)
	}

	w(`
# Sources are Parquet data sets: a file, a folder of .parquet files or a
# glob, relative to this file's folder. event_time names the column that
# holds each row's time: a latest view keeps the newest row of each entity by
# it, and an aggregate view's windows count back from the run by it.
sources:
`)
	lines := make([]string, 0, len(p.sources))
	comments := make([]string, 0, len(p.sources))
	for _, s := range p.sources {
		files := plural(len(s.set.schema.Files), "file") + ", " + plural(int(s.set.schema.Rows), "row")
		if s.eventTime == "" {
			lines = append(lines, fmt.Sprintf("  # - {name: %s, path: %s, event_time: ...}", s.name, yamlString(s.path)))
			comments = append(comments, files+"; no column can be the event time (an INT64 TIMESTAMP or INT32 DATE): add one upstream")
			continue
		}
		if len(s.otherTimes) > 0 {
			files += "; other times: " + strings.Join(s.otherTimes, ", ")
		}
		lines = append(lines, fmt.Sprintf("  - {name: %s, path: %s, event_time: %s}", s.name, yamlString(s.path), yamlString(s.eventTime)))
		comments = append(comments, files)
	}
	writeAligned(&b, lines, comments)

	w(`
# Views are what larder computes and serves: a named, typed set of values per
# entity, each run published whole as a new generation. Each view below is a
# latest view: the newest row of each entity in its source. To do next:
#
#   - keep the features clients need, and name them as clients should ask
#     for them (column: keeps the source column when the name differs);
#   - set max_age, how old a value may be (by its event time) before reads
#     report it stale, such as 30d;
#   - set schedule, a quoted cron spec such as "0 * * * *" (hourly), for
#     "larder schedule" to run the view; without one it runs on demand;
#   - over events, add aggregate views: counts, sums, means and last values
#     over windows such as 1d and 7d (an example follows the views).
`)
	var views int
	for _, s := range p.sources {
		if s.entity != nil && len(s.features) > 0 {
			views++
		}
	}
	if views == 0 {
		w("views: []\n")
	} else {
		w("views:\n")
	}
	for i, s := range p.sources {
		if i > 0 {
			b.WriteString("\n")
		}
		p.writeView(&b, s)
	}
	p.writeAggregateExample(&b)
	return []byte(b.String())
}

// writeView writes the latest view of s, commented out when its source
// is, or a comment saying why it has none.
func (p *initPlan) writeView(b *strings.Builder, s *initSource) {
	switch {
	case s.entity == nil:
		fmt.Fprintf(b, "  # No view of source %s: no column looks like a key (id, or a name ending in\n  # _id; INT64, INT32 or STRING). Declare an entity keyed by one of its columns.\n", s.name)
		return
	case len(s.features) == 0:
		fmt.Fprintf(b, "  # No view of source %s: it has no column left to feed a feature.\n", s.name)
		return
	}
	prefix := "  "
	if s.eventTime == "" {
		prefix = "  # "
		fmt.Fprintf(b, "  # The view of source %s, once the source has an event time:\n", s.name)
	}
	fmt.Fprintf(b, "%s- name: %s\n", prefix, s.name)
	body := prefix + "  "
	fmt.Fprintf(b, "%skind: latest\n%sentity: %s\n%ssource: %s\n", body, body, s.entity.name, body, s.name)
	fmt.Fprintf(b, "%s# max_age: 30d\n%s# schedule: \"0 * * * *\"\n", body, body)
	var keys []string
	for _, f := range s.features {
		if slices.ContainsFunc(p.entities, func(e *initEntity) bool { return e.key == f.column }) {
			keys = append(keys, f.column)
		}
	}
	if len(keys) > 0 {
		fmt.Fprintf(b, "%s# A latest view keeps one row per %s: one %s. For many per %s,\n", body, s.entity.name, strings.Join(keys, ", "), s.entity.name)
		fmt.Fprintf(b, "%s# see aggregate (last, count_distinct) and candidates views.\n", body)
	}
	fmt.Fprintf(b, "%sfeatures:\n", body)
	lines := make([]string, 0, len(s.features))
	comments := make([]string, 0, len(s.features))
	for _, f := range s.features {
		line := fmt.Sprintf("%s  - {name: %s, type: %s}", body, f.name, f.typ)
		if f.name != f.column {
			line = fmt.Sprintf("%s  - {name: %s, type: %s, column: %s}", body, f.name, f.typ, yamlString(f.column))
		}
		comment := f.parquet
		if len(f.also) > 0 {
			var also []string
			for _, t := range f.also {
				also = append(also, t.String())
			}
			comment += "; or " + strings.Join(also, ", ")
		}
		lines = append(lines, line)
		comments = append(comments, comment)
	}
	writeAligned(b, lines, comments)
	for _, l := range s.left {
		fmt.Fprintf(b, "%s  # left out: %s: %s\n", body, l.column, l.why)
	}
}

// writeAggregateExample writes, commented out, an aggregate view over a
// source of events (by its name), else the one with the most rows, that has
// a numeric feature.
func (p *initPlan) writeAggregateExample(b *strings.Builder) {
	var best *initSource
	var col *initFeature
	better := func(s *initSource) bool {
		if best == nil {
			return true
		}
		se, be := strings.Contains(s.name, "event"), strings.Contains(best.name, "event")
		return se && !be || se == be && s.set.schema.Rows > best.set.schema.Rows
	}
	for _, s := range p.sources {
		if s.entity == nil || s.eventTime == "" || !better(s) {
			continue
		}
		// A measure: a float, else an integer that is not an id.
		for _, floats := range []bool{true, false} {
			i := slices.IndexFunc(s.features, func(f initFeature) bool {
				if floats {
					return f.typ == larder.TypeFloat64 || f.typ == larder.TypeFloat32
				}
				return f.typ == larder.TypeInt64 && !keyLike(f.column)
			})
			if i >= 0 {
				best, col = s, &s.features[i]
				break
			}
		}
	}
	if best == nil {
		return
	}
	name := ""
	if col.name != col.column {
		name = ", name: " + col.name
	}
	fmt.Fprintf(b, `
# An aggregate view computes, per entity, functions of a column over windows
# that end at the time of the run. This one gives the number, sum and mean
# of %s per %s over the last day and week, as the features
# %s_count_1d ... %s_mean_7d.
# The functions are count, sum, mean, min, max, last and count_distinct.
#
#  - name: %s
#    kind: aggregate
#    entity: %s
#    source: %s
#    schedule: "*/15 * * * *"
#    aggregations:
#      - {column: %s, type: %s%s, functions: [count, sum, mean], windows: [1d, 7d]}
`, col.column, best.entity.name, col.name, col.name,
		sanitizeName(best.entity.name+"_activity", "view"), best.entity.name, best.name,
		yamlString(col.column), col.typ, name)
}

// writeAligned writes lines, each followed by its comment, the comments
// aligned.
func writeAligned(b *strings.Builder, lines, comments []string) {
	width := 0
	for _, l := range lines {
		width = max(width, len(l))
	}
	for i, l := range lines {
		if comments[i] == "" {
			fmt.Fprintf(b, "%s\n", l)
			continue
		}
		fmt.Fprintf(b, "%-*s  # %s\n", width, l, comments[i])
	}
}
