package store_test

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/store"
	"github.com/redis/go-redis/v9"
)

func TestRuns(t *testing.T) { forEachBackend(t, testRuns) }

func testRuns(t *testing.T, client redis.UniversalClient) {
	ctx := context.Background()
	s := store.New(client, "test", store.Options{})
	t0 := time.Date(2026, 3, 1, 10, 0, 0, 123456789, time.UTC)

	full := larder.Run{
		View: "wide", Kind: larder.KindLatest, Generation: 7, Incremental: true,
		StartedAt: t0, Duration: 1500*time.Millisecond + 7,
		RowsRead: 1_000_000, EntitiesWritten: 100_000,
		Skipped: map[string]int64{"null key": 3, "after run time": 12},
		Nulled:  map[string]int64{"non-finite": 2, "oversize": 1},
		PeakRSS: 512 << 20,
	}
	failed := larder.Run{
		View: "prices", Kind: larder.KindAggregate, StartedAt: t0.Add(time.Minute),
		Duration: time.Second, RowsRead: 10, Err: "materialize prices: source file x.parquet: no column \"price\"",
	}
	for _, r := range []larder.Run{full, failed} {
		if err := s.RecordRun(ctx, r); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("round trip", func(t *testing.T) {
		got, err := s.Runs(ctx, "wide", 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || !got[0].StartedAt.Equal(t0) {
			t.Fatalf("runs = %+v, want the one recorded", got)
		}
		got[0].StartedAt = t0
		if !reflect.DeepEqual(got[0], full) {
			t.Errorf("run = %+v\nwant %+v", got[0], full)
		}
	})

	t.Run("a view whose runs all failed is listed", func(t *testing.T) {
		views, err := s.Views(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(views, []string{"prices", "wide"}) {
			t.Errorf("views = %v, want [prices wide]", views)
		}
		got, err := s.Runs(ctx, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || got[0].View != "prices" || got[0].Err != failed.Err || got[1].View != "wide" {
			t.Errorf("runs of every view = %+v, want prices's failure, then wide's run", got)
		}
	})

	t.Run("unknown view", func(t *testing.T) {
		got, err := s.Runs(ctx, "nope", 5)
		if err != nil || len(got) != 0 {
			t.Errorf("Runs(nope) = %v, %v; want no runs and no error", got, err)
		}
	})

	t.Run("no view named", func(t *testing.T) {
		err := s.RecordRun(ctx, larder.Run{Kind: larder.KindLatest})
		if !larder.IsInvalid(err) {
			t.Errorf("RecordRun without a view: %v, want an *InvalidError", err)
		}
	})
}

func TestRunsHistoryAndOrder(t *testing.T) { forEachBackend(t, testRunsHistoryAndOrder) }

func testRunsHistoryAndOrder(t *testing.T, client redis.UniversalClient) {
	ctx := context.Background()
	s := store.New(client, "test", store.Options{})
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

	// 105 runs of "a" a minute apart, and runs of "b" and "c" interleaved
	// with the last of them; "b" and "c" share a start time.
	const n = store.RunHistory + 5
	for i := range n {
		r := larder.Run{View: "a", Kind: larder.KindLatest, Generation: int64(i + 1), StartedAt: t0.Add(time.Duration(i) * time.Minute)}
		if err := s.RecordRun(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range []larder.Run{
		{View: "c", Kind: larder.KindLatest, Generation: 1, StartedAt: t0.Add((n - 2) * time.Minute).Add(30 * time.Second)},
		{View: "b", Kind: larder.KindLatest, Generation: 1, StartedAt: t0.Add((n - 2) * time.Minute).Add(30 * time.Second)},
		{View: "b", Kind: larder.KindLatest, Generation: 2, StartedAt: t0.Add(n * time.Minute)},
	} {
		if err := s.RecordRun(ctx, r); err != nil {
			t.Fatal(err)
		}
	}

	label := func(runs []larder.Run) []string {
		out := make([]string, len(runs))
		for i, r := range runs {
			out[i] = fmt.Sprintf("%s%d", r.View, r.Generation)
		}
		return out
	}
	tests := []struct {
		name  string
		view  string
		limit int
		want  []string
	}{
		{"newest first", "a", 3, []string{"a105", "a104", "a103"}},
		{"every view merged by start time", "", 5, []string{"b2", "a105", "b1", "c1", "a104"}},
		{"one of another view", "b", 1, []string{"b2"}},
		{"limit past the records", "b", 50, []string{"b2", "b1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.Runs(ctx, tc.view, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(label(got), tc.want) {
				t.Errorf("Runs(%q, %d) = %v, want %v", tc.view, tc.limit, label(got), tc.want)
			}
		})
	}

	t.Run("history is bounded", func(t *testing.T) {
		// A record written by hand or by a broken writer is skipped; one
		// more record trims the list back to RunHistory, the bad one
		// included.
		if err := client.LPush(ctx, "larder:test:runs:a", "{not json").Err(); err != nil {
			t.Fatal(err)
		}
		if err := s.RecordRun(ctx, larder.Run{View: "a", Kind: larder.KindLatest, Generation: n + 1, StartedAt: t0.Add(n * time.Hour)}); err != nil {
			t.Fatal(err)
		}
		if l := client.LLen(ctx, "larder:test:runs:a").Val(); l != store.RunHistory {
			t.Errorf("LLEN = %d, want %d", l, store.RunHistory)
		}
		got, err := s.Runs(ctx, "a", 0)
		if err != nil {
			t.Fatal(err)
		}
		labels := label(got)
		// The bad record is skipped: 99 good ones remain.
		if len(labels) != store.RunHistory-1 || labels[0] != "a106" || labels[len(labels)-1] != "a8" {
			t.Errorf("Runs(a, 0) = %d runs from %s to %s, want %d from a106 to a8",
				len(labels), labels[0], labels[len(labels)-1], store.RunHistory-1)
		}
	})
}
