package store

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/larder-dev/larder"
	"github.com/redis/go-redis/v9"
)

// RunHistory is the number of run records kept per view: RecordRun drops
// the oldest beyond it.
const RunHistory = 100

var _ larder.RunLog = (*Store)(nil)

// runRecord is a larder.Run as stored: one JSON document per run, readable
// with redis-cli. Fields are added, never renamed, so that old records stay
// readable.
type runRecord struct {
	View            string           `json:"view"`
	Kind            string           `json:"kind"`
	State           string           `json:"state,omitempty"`
	Generation      int64            `json:"generation,omitempty"`
	Incremental     bool             `json:"incremental,omitempty"`
	AsOf            time.Time        `json:"as_of,omitzero"`
	Inputs          []inputRecord    `json:"inputs,omitempty"`
	Trigger         string           `json:"trigger,omitempty"`
	Tick            time.Time        `json:"tick,omitzero"`
	Job             string           `json:"job,omitempty"`
	Shards          int              `json:"shards,omitempty"`
	Owner           string           `json:"owner,omitempty"`
	Token           int64            `json:"token,omitempty"`
	StartedAt       time.Time        `json:"started_at"`
	DurationNS      int64            `json:"duration_ns"`
	RowsRead        int64            `json:"rows_read"`
	EntitiesWritten int64            `json:"entities_written"`
	Skipped         map[string]int64 `json:"skipped,omitempty"`
	Nulled          map[string]int64 `json:"nulled,omitempty"`
	PeakRSS         int64            `json:"peak_rss,omitempty"`
	Err             string           `json:"error,omitempty"`
}

// inputRecord is a larder.InputGeneration in a run record.
type inputRecord struct {
	View       string    `json:"view"`
	Generation int64     `json:"generation"`
	AsOf       time.Time `json:"as_of,omitzero"`
}

// RecordRun stores r at the head of the run list of r.View, drops the
// records past RunHistory and adds the view to the project's views set, so
// that Runs of every view finds a view whose runs all failed before writing
// anything. It returns an *larder.InvalidError when r names no view, and
// larder.ErrUnavailable or ctx.Err() when Redis cannot be written.
func (s *Store) RecordRun(ctx context.Context, r larder.Run) error {
	if r.View == "" {
		return larder.Invalidf("store: record run: the run names no view")
	}
	doc, err := encodeRun(r)
	if err != nil {
		return err
	}
	// One key per command, so this works on a cluster; LTRIM right after
	// LPUSH keeps the list bounded even when runs record concurrently.
	key := s.k.runs(r.View)
	pipe := s.client.Pipeline()
	pipe.LPush(ctx, key, doc)
	pipe.LTrim(ctx, key, 0, RunHistory-1)
	pipe.SAdd(ctx, s.k.views(), r.View)
	if r.Token > 0 {
		pipe.HDel(ctx, s.k.active(r.View), strconv.FormatInt(r.Token, 10))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return redisErr(ctx, "record run of "+r.View, err)
	}
	return nil
}

// StartRun notes that run r has started under the run lease of token
// r.Token (see larder.RunLog): Cleanup records it as abandoned if its lease
// lapses before RecordRun clears the note. It returns an
// *larder.InvalidError when r names no view or no token, and
// larder.ErrUnavailable or ctx.Err() when Redis cannot be written.
func (s *Store) StartRun(ctx context.Context, r larder.Run) error {
	if r.View == "" || r.Token <= 0 {
		return larder.Invalidf("store: start run: the run names no view or no lease token")
	}
	doc, err := encodeRun(r)
	if err != nil {
		return err
	}
	pipe := s.client.Pipeline()
	pipe.HSet(ctx, s.k.active(r.View), strconv.FormatInt(r.Token, 10), doc)
	pipe.SAdd(ctx, s.k.views(), r.View)
	if _, err := pipe.Exec(ctx); err != nil {
		return redisErr(ctx, "start run of "+r.View, err)
	}
	return nil
}

// encodeRun returns the stored form of r.
func encodeRun(r larder.Run) ([]byte, error) {
	var inputs []inputRecord
	for _, in := range r.Inputs {
		inputs = append(inputs, inputRecord{View: in.View, Generation: in.Generation, AsOf: utcOrZero(in.AsOf)})
	}
	doc, err := json.Marshal(runRecord{
		View:            r.View,
		Kind:            string(r.Kind),
		State:           string(r.State),
		Generation:      r.Generation,
		Incremental:     r.Incremental,
		AsOf:            utcOrZero(r.AsOf),
		Inputs:          inputs,
		Trigger:         string(r.Trigger),
		Tick:            utcOrZero(r.Tick),
		Job:             r.Job,
		Shards:          r.Shards,
		Owner:           r.Owner,
		Token:           r.Token,
		StartedAt:       r.StartedAt.UTC(),
		DurationNS:      int64(r.Duration),
		RowsRead:        r.RowsRead,
		EntitiesWritten: r.EntitiesWritten,
		Skipped:         r.Skipped,
		Nulled:          r.Nulled,
		PeakRSS:         r.PeakRSS,
		Err:             r.Err,
	})
	if err != nil {
		return nil, fmt.Errorf("store: record run of %s: %w", r.View, err)
	}
	return doc, nil
}

// Runs returns the most recent runs of view, newest first: at most limit of
// them, or every record kept (up to RunHistory per view) when limit is 0 or
// less. When view is "", it merges the runs of every view in the project's
// views set by StartedAt, newest first (ties by view name). A view with no
// record has no runs: the result is then empty, not an error. Records that
// do not decode are skipped and logged, and count against limit. It returns larder.ErrUnavailable or
// ctx.Err() when Redis cannot be read.
func (s *Store) Runs(ctx context.Context, view string, limit int) ([]larder.Run, error) {
	n := int64(RunHistory)
	if limit > 0 {
		n = int64(limit)
	}
	views := []string{view}
	if view == "" {
		var err error
		if views, err = s.Views(ctx); err != nil {
			return nil, err
		}
	}
	if len(views) == 0 {
		return nil, nil
	}
	pipe := s.client.Pipeline()
	cmds := make([]*redis.StringSliceCmd, len(views))
	for i, v := range views {
		cmds[i] = pipe.LRange(ctx, s.k.runs(v), 0, n-1)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, redisErr(ctx, "read runs", err)
	}
	var runs []larder.Run
	for i, c := range cmds {
		for _, doc := range c.Val() {
			r, err := decodeRun(doc)
			if err != nil {
				s.log.Warn("skipping a run record that does not decode", "key", s.k.runs(views[i]), "err", err)
				continue
			}
			runs = append(runs, r)
		}
	}
	if view == "" {
		// Each list is newest first already; a stable sort keeps that order
		// for runs of one view started at the same instant.
		slices.SortStableFunc(runs, func(a, b larder.Run) int {
			if c := b.StartedAt.Compare(a.StartedAt); c != 0 {
				return c
			}
			return cmp.Compare(a.View, b.View)
		})
	}
	if int64(len(runs)) > n {
		runs = runs[:n]
	}
	return runs, nil
}

// decodeRun decodes one stored run record.
func decodeRun(doc string) (larder.Run, error) {
	var rec runRecord
	if err := json.Unmarshal([]byte(doc), &rec); err != nil {
		return larder.Run{}, err
	}
	if rec.View == "" {
		return larder.Run{}, fmt.Errorf("run record %.40q names no view", doc)
	}
	var inputs []larder.InputGeneration
	for _, in := range rec.Inputs {
		inputs = append(inputs, larder.InputGeneration{View: in.View, Generation: in.Generation, AsOf: utcOrZero(in.AsOf)})
	}
	return larder.Run{
		View:            rec.View,
		Kind:            larder.ViewKind(rec.Kind),
		State:           larder.RunState(rec.State),
		Generation:      rec.Generation,
		Incremental:     rec.Incremental,
		AsOf:            utcOrZero(rec.AsOf),
		Inputs:          inputs,
		Trigger:         larder.Trigger(rec.Trigger),
		Tick:            utcOrZero(rec.Tick),
		Job:             rec.Job,
		Shards:          rec.Shards,
		Owner:           rec.Owner,
		Token:           rec.Token,
		StartedAt:       rec.StartedAt.UTC(),
		Duration:        time.Duration(rec.DurationNS),
		RowsRead:        rec.RowsRead,
		EntitiesWritten: rec.EntitiesWritten,
		Skipped:         rec.Skipped,
		Nulled:          rec.Nulled,
		PeakRSS:         rec.PeakRSS,
		Err:             rec.Err,
	}, nil
}

// utcOrZero returns t in UTC, keeping the zero time zero.
func utcOrZero(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}
