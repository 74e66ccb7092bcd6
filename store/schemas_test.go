package store_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/store"
	"github.com/redis/go-redis/v9"
)

// TestServeOwnSchema changes a view's schema under a reader that runs the
// old definition: it keeps reading the newest generation of its own
// schema, which cleanup keeps past its grace period while the reader's
// registration lasts; a reader of the new definition reads the new
// generation; the publish warns that a server reads another schema; once
// the old reader is gone, its generation is deleted.
func TestServeOwnSchema(t *testing.T) {
	forEachBackend(t, func(t *testing.T, client redis.UniversalClient) {
		ctx := context.Background()
		p := testProject(t)
		oldDef := p.View("wide")
		newDef := *oldDef
		newDef.Features = append(slices.Clone(oldDef.Features), larder.Feature{Name: "added", Type: larder.TypeInt64})
		clock := newFakeClock()
		at := clock.Now()
		var logs bytes.Buffer
		writer := store.New(client, p.Name, store.Options{Now: clock.Now, Owner: "job:1",
			Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		opts := func(owner string) store.Options {
			return store.Options{Now: clock.Now, Owner: owner, ServeOwnSchema: true, RefreshInterval: time.Second}
		}
		oldServer, newServer := store.New(client, p.Name, opts("old:1")), store.New(client, p.Name, opts("new:1"))
		batch := store.New(client, p.Name, store.Options{Now: clock.Now})
		if err := oldServer.RegisterReaders(ctx, []*larder.View{oldDef}, time.Minute); err != nil {
			t.Fatal(err)
		}
		read := func(s *store.Store, v *larder.View) (larder.Lookup, error) {
			l := larder.Lookup{View: v, Keys: []larder.Key{larder.Int64Key(7)}}
			return l, s.Read(ctx, []*larder.Lookup{&l})
		}
		oldRow := func(id, gen int64) larder.Row { return wideRow(id, gen, at) }
		newRow := func(id, gen int64) larder.Row {
			r := wideRow(id, gen, at)
			r.Values = append(r.Values, larder.Int64Value(gen))
			return r
		}

		g1 := publish(t, writer, oldDef, 10, oldRow)
		if l, err := read(oldServer, oldDef); err != nil || l.Generation != g1.ID {
			t.Fatalf("old server before the change: %+v, %v", l, err)
		}
		_, err := read(newServer, &newDef)
		if !errors.Is(err, larder.ErrSchemaChanged) || !strings.Contains(err.Error(), "no generation of this process's schema is held") {
			t.Fatalf("new server before the new generation = %v, want ErrSchemaChanged saying none is held", err)
		}

		g2 := publish(t, writer, &newDef, 10, newRow)
		if !strings.Contains(logs.String(), "1 live server(s) read view wide with another definition") || !strings.Contains(logs.String(), "old:1") {
			t.Errorf("the publish did not warn of the server reading the old schema:\n%s", logs.String())
		}
		clock.Advance(3 * time.Second) // the readers' caches expire
		if l, err := read(oldServer, oldDef); err != nil || l.Generation != g1.ID || len(l.Rows[0].Values) != 20 {
			t.Fatalf("old server after the change: %+v, %v; want generation %d", l, err, g1.ID)
		}
		if l, err := read(newServer, &newDef); err != nil || l.Generation != g2.ID || l.Rows[0].Values[20].Int64() != g2.ID {
			t.Fatalf("new server after the change: %+v, %v; want generation %d", l, err, g2.ID)
		}
		if _, err := read(batch, oldDef); !errors.Is(err, larder.ErrSchemaChanged) {
			t.Errorf("a batch reader of the old definition = %v, want ErrSchemaChanged", err)
		}

		// Past the grace period, the old generation is kept for its reader.
		clock.Advance(writer.Options().GracePeriod + time.Second)
		if err := oldServer.RegisterReaders(ctx, []*larder.View{oldDef}, time.Minute); err != nil {
			t.Fatal(err)
		}
		if rep, err := writer.Cleanup(ctx, store.CleanupOptions{}); err != nil || len(rep.Cleaned) != 0 {
			t.Fatalf("cleanup while the old server runs = %+v, %v; want nothing deleted", rep, err)
		}
		if l, err := read(oldServer, oldDef); err != nil || l.Generation != g1.ID {
			t.Fatalf("old server past the grace period: %+v, %v", l, err)
		}
		// A third publish: the old server still reads generation 1; the
		// second is deleted once its grace period ends.
		g3 := publish(t, writer, &newDef, 10, newRow)
		clock.Advance(writer.Options().GracePeriod + time.Second)
		if err := oldServer.RegisterReaders(ctx, []*larder.View{oldDef}, time.Minute); err != nil {
			t.Fatal(err)
		}
		rep, err := writer.Cleanup(ctx, store.CleanupOptions{})
		if err != nil || len(rep.Cleaned) != 1 || rep.Cleaned[0].Generation != g2.ID {
			t.Fatalf("cleanup after a third publish = %+v, %v; want generation %d deleted", rep, err, g2.ID)
		}
		if l, err := read(oldServer, oldDef); err != nil || l.Generation != g1.ID {
			t.Fatalf("old server after a third publish: %+v, %v", l, err)
		}

		// The old server is reloaded with the new definition: its
		// registration moves, and the old generation goes.
		if err := oldServer.RegisterReaders(ctx, []*larder.View{&newDef}, time.Minute); err != nil {
			t.Fatal(err)
		}
		if rs, err := writer.Readers(ctx, "wide"); err != nil || len(rs) != 1 || rs[0].Fingerprint != newDef.Fingerprint() {
			t.Fatalf("readers after the reload = %+v, %v", rs, err)
		}
		if l, err := read(oldServer, &newDef); err != nil || l.Generation != g3.ID {
			t.Fatalf("reloaded server: %+v, %v; want generation %d", l, err, g3.ID)
		}
		rep, err = writer.Cleanup(ctx, store.CleanupOptions{})
		if err != nil || len(rep.Cleaned) != 1 || rep.Cleaned[0].Generation != g1.ID {
			t.Fatalf("cleanup once no server reads the old schema = %+v, %v; want generation %d deleted", rep, err, g1.ID)
		}

		// A registration that is not renewed lapses.
		if err := oldServer.UnregisterReaders(ctx); err != nil {
			t.Fatal(err)
		}
		if err := newServer.RegisterReaders(ctx, []*larder.View{oldDef}, time.Minute); err != nil {
			t.Fatal(err)
		}
		clock.Advance(2 * time.Minute)
		if rs, err := writer.Readers(ctx, "wide"); err != nil || len(rs) != 0 {
			t.Fatalf("readers after their registrations lapsed = %+v, %v", rs, err)
		}
	})
}
