// Package config reads larder.yaml, the file that describes a larder project,
// into the root package's definitions (larder.Project and the types it holds).
//
// Decoding is strict: an unknown field, a value of the wrong type, a bad
// duration, cron spec or type name is an error, as is every rule that
// larder.Project.Validate checks. Every problem found is reported at once, each
// with the file, the line, the column and the path of the field at fault:
//
//	larder.yaml:14:7: views[2].max_age: invalid duration "2x": ...
//
// The format is documented for operators in docs/configuration.md.
package config

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/larder-dev/larder"
)

// Loader reads larder.yaml files. The zero Loader is ready to use and reads
// environment variables (redis.password_env) from the process environment.
type Loader struct {
	// LookupEnv returns the value of an environment variable and whether it
	// is set. Nil means os.LookupEnv.
	LookupEnv func(key string) (string, bool)
}

// Load reads, decodes and validates the larder.yaml at path with the zero
// Loader. See Loader.Parse.
func Load(path string) (*larder.Project, error) {
	return Loader{}.Load(path)
}

// Parse decodes and validates larder.yaml data with the zero Loader. See
// Loader.Parse.
func Parse(filename string, data []byte) (*larder.Project, error) {
	return Loader{}.Parse(filename, data)
}

// Load reads the file at path and parses it (see Parse). It returns an error
// wrapping the *fs.PathError when the file cannot be read.
func (l Loader) Load(path string) (*larder.Project, error) {
	p, _, err := l.LoadPlaces(path)
	return p, err
}

// LoadPlaces is Load, and also returns where each field of the file is
// written, to report a problem found later (a source file that does not
// exist, a model that does not fit) at its field. The Places is nil when
// the project is.
func (l Loader) LoadPlaces(path string) (*larder.Project, *Places, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("config: %w", err)
	}
	p, d, err := l.parse(path, data)
	if err != nil {
		return nil, nil, err
	}
	return p, d.places(), nil
}

// Parse decodes data, the content of the larder.yaml named filename, into a
// Project: it sets Project.Dir to the absolute folder of filename, applies the
// defaults and validates the project. The returned project is ready to use.
//
// On any problem it returns a nil Project and an *Error that lists every
// problem found, each located by filename, line, column and field path.
func (l Loader) Parse(filename string, data []byte) (*larder.Project, error) {
	p, _, err := l.parse(filename, data)
	return p, err
}

// parse is Parse, and also returns the decoder, which knows where each
// field is written.
func (l Loader) parse(filename string, data []byte) (*larder.Project, *decoder, error) {
	lookup := l.LookupEnv
	if lookup == nil {
		lookup = os.LookupEnv
	}
	d := newDecoder(filename, lookup)
	p, ok := d.decode(data)
	if !ok {
		return nil, nil, d.err()
	}
	p.File = filename
	p.Dir = filepath.Dir(filename)
	if abs, err := filepath.Abs(p.Dir); err == nil {
		p.Dir = abs
	}
	p.SetDefaults()
	if err := p.Validate(); err != nil {
		var ve *larder.ValidationError
		if !errors.As(err, &ve) {
			return nil, nil, fmt.Errorf("config: %s: %w", filename, err)
		}
		for _, fe := range ve.Errs {
			d.fieldError(p, fe)
		}
	}
	if len(d.problems) > 0 {
		return nil, nil, d.err()
	}
	return p, d, nil
}

// Places says where each field of a larder.yaml is written. A nil Places
// knows no field: its problems name the file only.
type Places struct {
	file string
	at   map[string][2]int // the line and column of each field written
}

// Problem returns the problem msg about the field at path, a path as
// larder.Project.Validate writes it ("rankers[0].model"), placed where the
// field is written or, for a field left out, where the closest enclosing
// one is, as the loader places its own problems.
func (pl *Places) Problem(path, msg string) Problem {
	if pl == nil {
		return Problem{Field: path, Msg: msg}
	}
	pr := Problem{File: pl.file, Field: path, Msg: msg}
	for at := path; ; {
		if pos, ok := pl.at[at]; ok {
			pr.Line, pr.Column = pos[0], pos[1]
			return pr
		}
		if at == "" {
			return pr
		}
		at = at[:max(0, strings.LastIndexAny(at, ".["))]
	}
}

// places returns where each field decoded is written, with its column kept
// within its line as err does.
func (d *decoder) places() *Places {
	pl := &Places{file: d.file, at: make(map[string][2]int, len(d.at))}
	for path, site := range d.at {
		line, col := position(site)
		if line == 0 {
			continue
		}
		if line <= len(d.widths) && col > d.widths[line-1]+1 {
			col = d.widths[line-1] + 1
		}
		pl.at[path] = [2]int{line, col}
	}
	return pl
}

// Problem is one thing wrong in a larder.yaml.
type Problem struct {
	File string
	// Line and Column locate the problem, counting from 1; 0 means the
	// place is unknown (an empty file, for example).
	Line, Column int
	// Field is the path of the field at fault as larder.Project.Validate
	// writes it, such as "views[2].features[0].type"; it is empty for YAML
	// syntax errors. The problems of the features an aggregate or candidates
	// view generates are placed at the field they are generated from, such
	// as "views[1].aggregations[0].column".
	Field string
	Msg   string
}

// String formats p as "file:line:column: field: message", leaving out the
// parts that are unknown.
func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(p.Line))
		if p.Column > 0 {
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(p.Column))
		}
	}
	b.WriteString(": ")
	if p.Field != "" {
		b.WriteString(p.Field)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Error is every problem found in one larder.yaml, in the order of the file.
// Parse and Load return it; print it to show one problem per line.
type Error struct {
	Problems []Problem
}

// Error returns the problems, one per line.
func (e *Error) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// lineBreaks escapes the line breaks a message may quote from the file (a
// name written over two lines, say), so that Error keeps one problem per line.
var lineBreaks = strings.NewReplacer("\r", `\r`, "\n", `\n`)

// err returns the problems found so far as an *Error, in the order of the file.
// A problem without a place, in a file with content, is placed where the
// content starts. A column past the end of its line, where the YAML parser
// places a value left out (after "key:" or "-" at the end of a line), is
// moved to just past the line's last character, where the value would be
// written.
func (d *decoder) err() *Error {
	ps := slices.Clone(d.problems)
	for i := range ps {
		p := &ps[i]
		p.Msg, p.Field = lineBreaks.Replace(p.Msg), lineBreaks.Replace(p.Field)
		if p.Line == 0 {
			p.Line, p.Column = d.start[0], d.start[1]
		}
		if p.Line > 0 && p.Line <= len(d.widths) && p.Column > d.widths[p.Line-1]+1 {
			p.Column = d.widths[p.Line-1] + 1
		}
	}
	slices.SortStableFunc(ps, func(a, b Problem) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column))
	})
	return &Error{Problems: ps}
}
