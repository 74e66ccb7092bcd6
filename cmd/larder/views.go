package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/larder-dev/larder"
)

// The width `larder views` keeps its lines within when its output is not a
// terminal, and the fewest characters of an error its LAST FAILED column
// shows however long the line gets; --wide shows up to resultWidth.
const (
	viewsLineWidth  = 160
	minFailureWidth = 20
)

func (a *app) viewsCommand() *cobra.Command {
	var wide, asJSON bool
	cmd := &cobra.Command{
		Use:   "views",
		Short: "List the views with the as-of and age of their live generation, and their last and next runs",
		Long: `views lists every view of the project with its live generation: its id, its
rows, the instant it was computed as of (AS OF) and how old that is (AGE,
marked "(stale)" past the view's max age); its schedule, in its time zone
when not UTC, and when it runs next; when a run of it last succeeded (LAST
OK) and, when its latest run failed, when and why (LAST FAILED). A run
counts as failed when it ended with an error or was abandoned by its
process; a cancelled run or a skipped tick counts as neither.

--wide adds what started the run that published the live generation
(TRIGGER) and the generations of other views it was computed from (INPUTS).
--json prints one JSON object per view with every field, for scripts.`,
		Example: `  larder views
  larder views --wide
  larder views --json | jq -r 'select(.last_failure != null) | .view'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			p, err := a.loadProject()
			if err != nil {
				return err
			}
			if err := needsRedis(p, "larder views"); err != nil {
				return err
			}
			b, err := a.openStore(ctx, p)
			if err != nil {
				return err
			}
			defer b.Close()
			now := a.now()
			f := newFreshness(p, b.store, a.now)
			views := make([]viewState, 0, len(p.Views))
			for _, v := range p.Views {
				vs := viewState{view: v}
				switch g, err := b.store.Live(ctx, v); {
				case err == nil:
					vs.live = g
				case !errors.Is(err, larder.ErrNoGeneration):
					return fmt.Errorf("view %s: %w", v.Name, err)
				}
				if vs.fresh, err = f.view(ctx, v, vs.live, now); err != nil {
					return err
				}
				views = append(views, vs)
			}
			if asJSON {
				return printViewsJSON(a.stdout, views, now)
			}
			return printViews(a.stdout, views, now, terminalWidth(a.stdout, viewsLineWidth), wide)
		},
	}
	cmd.Flags().BoolVar(&wide, "wide", false, "add the live generation's trigger and input generations")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object per view, with every field")
	return cmd
}

// viewState is what `larder views` knows of one view.
type viewState struct {
	view  *larder.View
	live  larder.Generation // ID 0: never published
	fresh larder.ViewFreshness
}

// computed returns the instant the live generation's data are as of: its
// as-of, or its publish for a generation written without one. ok is false
// when the view has no live generation.
func (vs viewState) computed() (at time.Time, ok bool) {
	if vs.live.ID == 0 {
		return time.Time{}, false
	}
	if !vs.live.AsOf.IsZero() {
		return vs.live.AsOf, true
	}
	return vs.live.PublishedAt, true
}

// stale reports whether the live generation is older than the view's max
// age at now.
func (vs viewState) stale(now time.Time) bool {
	at, ok := vs.computed()
	return ok && vs.view.MaxAge > 0 && now.Sub(at) > vs.view.MaxAge
}

// printViews prints the table of views, in lines of at most width
// characters as far as the errors of LAST FAILED can be shortened to fit;
// wide adds the trigger and inputs of the live generations, and shows
// longer errors.
func printViews(w io.Writer, views []viewState, now time.Time, width int, wide bool) error {
	sharded, streamed := false, false
	for _, vs := range views {
		sharded = sharded || vs.view.Shards > 1
		streamed = streamed || len(vs.fresh.Streams) > 0
	}
	cols := []string{"VIEW", "KIND", "ENTITY", "FEATURES", "GENERATION", "ROWS", "AS OF", "AGE"}
	if wide {
		cols = append(cols, "TRIGGER", "INPUTS")
	}
	cols = append(cols, "MAX AGE", "SCHEDULE")
	if sharded {
		cols = append(cols, "SHARDS")
	}
	if streamed {
		cols = append(cols, "STREAM LAG")
	}
	cols = append(cols, "NEXT RUN", "LAST OK", "LAST FAILED")

	rows := [][]string{cols}
	var failures []*larder.Run // by row, nil for the header and views not failing
	failures = append(failures, nil)
	for _, vs := range views {
		v, g, f := vs.view, vs.live, vs.fresh
		gen, rowCount, asOf, age := "none", "-", "-", "-"
		if at, ok := vs.computed(); ok {
			gen, rowCount = fmt.Sprint(g.ID), fmt.Sprint(g.Rows)
			if !g.AsOf.IsZero() {
				asOf = g.AsOf.UTC().Format(time.RFC3339)
			}
			age = formatAge(now.Sub(at))
			if vs.stale(now) {
				age += " (stale)"
			}
		}
		row := []string{v.Name, string(v.Kind), v.Entity, fmt.Sprint(len(v.Features)), gen, rowCount, asOf, age}
		if wide {
			trigger, inputs := "-", "-"
			if g.ID != 0 {
				trigger, inputs = orDash(string(g.Trigger), g.Trigger != ""), formatInputs(g.Inputs)
			}
			row = append(row, trigger, inputs)
		}
		row = append(row, orDash(formatAge(v.MaxAge), v.MaxAge > 0), formatSchedule(v, f))
		if sharded {
			row = append(row, fmt.Sprint(max(1, v.Shards)))
		}
		if streamed {
			row = append(row, formatStreamLags(f.Streams))
		}
		next := "-"
		if !f.NextRun.IsZero() {
			next = "in " + formatAge(f.NextRun.Sub(now))
		}
		lastOK, lastFailed := "-", "-"
		if f.LastSuccess != nil {
			lastOK = formatAge(now.Sub(finishedAt(f.LastSuccess))) + " ago"
		}
		var failure *larder.Run
		if failing(f) {
			failure = f.LastFailure
			lastFailed = formatAge(now.Sub(finishedAt(failure))) + " ago: "
		}
		rows = append(rows, append(row, next, lastOK, lastFailed))
		failures = append(failures, failure)
	}

	// The columns before LAST FAILED are as wide as their widest cell,
	// and two spaces apart.
	used := 0
	for c := range len(cols) - 1 {
		cw := 0
		for _, row := range rows {
			cw = max(cw, utf8.RuneCountInString(row[c]))
		}
		used += cw + 2
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for i, row := range rows {
		if r := failures[i]; r != nil {
			errWidth := max(minFailureWidth, width-used-utf8.RuneCountInString(row[len(row)-1]))
			if wide {
				errWidth = max(errWidth, resultWidth)
			}
			row[len(row)-1] += runError(*r, errWidth)
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	return tw.Flush()
}

// terminalWidth returns the width of the terminal w writes to, or def when
// w is not a terminal.
func terminalWidth(w io.Writer, def int) int {
	f, ok := w.(*os.File)
	if !ok {
		return def
	}
	width, _, err := term.GetSize(int(f.Fd()))
	if err != nil || width <= 0 {
		return def
	}
	return width
}

// formatStreamLags prints how far behind the streams of a view are:
// "clicks 0 (0s), orders 120 (3.5s)"; "-" for a view without streams.
func formatStreamLags(lags []larder.StreamLag) string {
	if len(lags) == 0 {
		return "-"
	}
	parts := make([]string, len(lags))
	for i, l := range lags {
		if l.Err != "" {
			parts[i] = l.Stream + " unknown"
			continue
		}
		parts[i] = fmt.Sprintf("%s %d (%s)", l.Stream, l.Entries, formatAge(time.Duration(l.Seconds*float64(time.Second))))
	}
	return strings.Join(parts, ", ")
}

// formatSchedule prints a view's schedule, followed by its zone unless
// that is UTC: "0 3 * * * Europe/Paris"; "-" for a view without one.
func formatSchedule(v *larder.View, f larder.ViewFreshness) string {
	if v.Schedule == "" {
		return "-"
	}
	if f.TimeZone == "" || f.TimeZone == "UTC" {
		return v.Schedule
	}
	return v.Schedule + " " + f.TimeZone
}

// formatInputs prints input generations as "user_profile@3,item_profile@2";
// "-" when there are none.
func formatInputs(inputs []larder.InputGeneration) string {
	if len(inputs) == 0 {
		return "-"
	}
	parts := make([]string, len(inputs))
	for i, in := range inputs {
		parts[i] = fmt.Sprintf("%s@%d", in.View, in.Generation)
	}
	return strings.Join(parts, ",")
}

// viewJSON is the --json form of one view. Times are RFC 3339 in UTC;
// a time or a run that does not apply is null; a string that is not known
// is "".
type viewJSON struct {
	View        string        `json:"view"`
	Kind        string        `json:"kind"`
	Entity      string        `json:"entity"`
	Description string        `json:"description"`
	Features    []featureJSON `json:"features"`
	// Generation is the live generation's id; 0 when the view was never
	// published, and then every field down to Inputs is null or empty.
	Generation  int64      `json:"generation"`
	Rows        int64      `json:"rows"`
	StartedAt   *time.Time `json:"started_at"`
	PublishedAt *time.Time `json:"published_at"`
	AsOf        *time.Time `json:"as_of"`
	// AgeSeconds is now minus AsOf (minus PublishedAt without an as-of).
	AgeSeconds *float64    `json:"age_seconds"`
	Stale      bool        `json:"stale"`
	Trigger    string      `json:"trigger"`
	Job        string      `json:"job"`
	Model      string      `json:"model"`
	Inputs     []inputJSON `json:"inputs"`

	// MaxAgeSeconds is 0 for a view whose values never go stale.
	MaxAgeSeconds float64 `json:"max_age_seconds"`
	Schedule      string  `json:"schedule"`
	TimeZone      string  `json:"time_zone"`
	// Shards is the number of pieces a run is split into; 0 and 1 both
	// mean one.
	Shards      int        `json:"shards"`
	NextRun     *time.Time `json:"next_run"`
	LastSuccess *runJSON   `json:"last_success"`
	LastFailure *runJSON   `json:"last_failure"`
	// Failing is true when LastFailure ended after LastSuccess.
	Failing bool `json:"failing"`
	// Streams are how far behind the view's streams are.
	Streams []streamLagJSON `json:"streams,omitempty"`
}

type featureJSON struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

type inputJSON struct {
	View       string     `json:"view"`
	Generation int64      `json:"generation"`
	AsOf       *time.Time `json:"as_of"`
}

// runJSON is the --json form of a run.
type runJSON struct {
	State           string      `json:"state"`
	Generation      int64       `json:"generation"`
	Incremental     bool        `json:"incremental"`
	StartedAt       time.Time   `json:"started_at"`
	FinishedAt      time.Time   `json:"finished_at"`
	DurationSeconds float64     `json:"duration_seconds"`
	AsOf            *time.Time  `json:"as_of"`
	Trigger         string      `json:"trigger"`
	Job             string      `json:"job"`
	Shards          int         `json:"shards"`
	Owner           string      `json:"owner"`
	Inputs          []inputJSON `json:"inputs"`
	Error           string      `json:"error"`
}

// printViewsJSON prints one JSON object per view.
func printViewsJSON(w io.Writer, views []viewState, now time.Time) error {
	enc := json.NewEncoder(w)
	for _, vs := range views {
		v, g, f := vs.view, vs.live, vs.fresh
		out := viewJSON{
			View: v.Name, Kind: string(v.Kind), Entity: v.Entity, Description: v.Description,
			Features:   make([]featureJSON, len(v.Features)),
			Generation: g.ID, Inputs: inputsJSON(g.Inputs),
			MaxAgeSeconds: v.MaxAge.Seconds(), Schedule: v.Schedule, TimeZone: f.TimeZone, Shards: v.Shards,
			NextRun: timeJSON(f.NextRun), LastSuccess: toRunJSON(f.LastSuccess), LastFailure: toRunJSON(f.LastFailure),
			Failing: failing(f),
		}
		for i, ft := range v.Features {
			out.Features[i] = featureJSON{Name: ft.Name, Type: ft.Type.String()}
		}
		for _, l := range f.Streams {
			out.Streams = append(out.Streams, streamLagJSON{Stream: l.Stream, Source: l.Source, LagEntries: l.Entries,
				LagSeconds: l.Seconds, Pending: l.Pending, Error: l.Err})
		}
		if at, ok := vs.computed(); ok {
			age := now.Sub(at).Seconds()
			out.Rows, out.AgeSeconds, out.Stale = g.Rows, &age, vs.stale(now)
			out.StartedAt, out.PublishedAt, out.AsOf = timeJSON(g.StartedAt), timeJSON(g.PublishedAt), timeJSON(g.AsOf)
			out.Trigger, out.Job, out.Model = string(g.Trigger), g.Job, g.Model
		}
		if err := enc.Encode(out); err != nil {
			return err
		}
	}
	return nil
}

// streamLagJSON is how far behind one stream of a view is.
type streamLagJSON struct {
	Stream     string  `json:"stream"`
	Source     string  `json:"source"`
	LagEntries int64   `json:"lag_entries"`
	LagSeconds float64 `json:"lag_seconds"`
	Pending    int64   `json:"pending"`
	Error      string  `json:"error,omitempty"`
}

// timeJSON returns t in UTC, or nil for the zero time.
func timeJSON(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

func inputsJSON(inputs []larder.InputGeneration) []inputJSON {
	out := make([]inputJSON, len(inputs))
	for i, in := range inputs {
		out[i] = inputJSON{View: in.View, Generation: in.Generation, AsOf: timeJSON(in.AsOf)}
	}
	return out
}

func toRunJSON(r *larder.Run) *runJSON {
	if r == nil {
		return nil
	}
	return &runJSON{
		State: string(r.Result()), Generation: r.Generation, Incremental: r.Incremental,
		StartedAt: r.StartedAt.UTC(), FinishedAt: finishedAt(r).UTC(), DurationSeconds: r.Duration.Seconds(),
		AsOf: timeJSON(r.AsOf), Trigger: string(r.Trigger), Job: r.Job, Shards: r.Shards, Owner: r.Owner,
		Inputs: inputsJSON(r.Inputs), Error: r.Err,
	}
}

// formatAge prints a duration the way an operator reads it (larder.AgeText).
func formatAge(d time.Duration) string { return larder.AgeText(d) }

func orDash(s string, ok bool) string {
	if !ok {
		return "-"
	}
	return s
}
