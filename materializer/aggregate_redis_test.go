package materializer_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/materializer"
	"github.com/larder-dev/larder/redistest"
	"github.com/larder-dev/larder/store"
)

// TestRedisAggregateReadBack materializes the randomized aggregate view into
// a real redis-server and reads every entity back through the store: what
// the online store serves equals the brute-force reference, nulls, counts
// and strings included.
func TestRedisAggregateReadBack(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client()
	runTime := baseTime.Add(time.Hour)
	rng := rand.New(rand.NewPCG(5, 5))
	dir := t.TempDir()
	var events []event
	for i := range 3 {
		rows := randomRows(rng, 1500, 200, runTime)
		writeParquet(t, filepath.Join(dir, "data", fmt.Sprintf("part-%d.parquet", i)), rows, smallGroups(300)...)
		for j := range rows {
			events = append(events, rows[j].event())
		}
	}
	p := aggregateProject(t, dir, "data", larder.TypeInt64, randomAggregations(t)...)
	want, _ := bruteAggregate(p.View("v"), events, runTime)

	m := materializer.New(p, store.New(client, p.Name, store.Options{}), materializer.Options{Now: fixedClock(runTime)})
	rep, err := m.Run(context.Background(), "v")
	if err != nil {
		t.Fatal(err)
	}
	got, gen := readAll(t, client, p, keysOf(want, larder.Int64Key(-1000)))
	if gen.ID != rep.Generation || gen.Rows != int64(len(want)) || gen.Fingerprint != p.View("v").Fingerprint() {
		t.Errorf("live generation = %+v; want id %d with %d rows", gen, rep.Generation, len(want))
	}
	if d := diffRows(got, want); d != "" {
		t.Errorf("rows read back differ from the brute-force result:\n%s", d)
	}
}
