package materializer_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/materializer"
	"github.com/larder-dev/larder/redistest"
	"github.com/larder-dev/larder/store"
	"github.com/redis/go-redis/v9"
)

// readAll reads keys from the live generation of p's view "v" through a new
// store, so that nothing cached by an earlier store answers.
func readAll(tb testing.TB, client redis.UniversalClient, p *larder.Project, keys []larder.Key) (map[larder.Key]larder.Row, larder.Generation) {
	tb.Helper()
	ctx := context.Background()
	st := store.New(client, p.Name, store.Options{})
	v := p.View("v")
	l := &larder.Lookup{View: v, Keys: keys}
	if err := st.Read(ctx, []*larder.Lookup{l}); err != nil {
		tb.Fatalf("Read: %v", err)
	}
	gen, err := st.Live(ctx, v)
	if err != nil {
		tb.Fatalf("Live: %v", err)
	}
	if l.Generation != gen.ID {
		tb.Fatalf("Read used generation %d, Live says %d", l.Generation, gen.ID)
	}
	rows := make(map[larder.Key]larder.Row)
	for i, k := range keys {
		if l.Found[i] {
			rows[k] = l.Rows[i]
		}
	}
	return rows, gen
}

func keysOf(rows map[larder.Key]larder.Row, extra ...larder.Key) []larder.Key {
	keys := append([]larder.Key(nil), extra...)
	for k := range rows {
		keys = append(keys, k)
	}
	return keys
}

func TestRedisMaterializeReadBack(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client()
	rng := rand.New(rand.NewPCG(7, 7))
	dir := t.TempDir()
	var records []record
	for i := range 3 {
		rows := randomAllTypes(rng, 1500, 400, 60)
		writeParquet(t, filepath.Join(dir, "data", fmt.Sprintf("part-%d.parquet", i)), rows, smallGroups(200)...)
		for j := range rows {
			records = append(records, rows[j].record())
		}
	}
	runTime := baseTime.Add(45 * time.Second)
	want, _ := bruteLatest(records, runTime)
	p := projectFor(t, dir, "data", larder.TypeInt64, allTypesFeatures...)

	st := store.New(client, p.Name, store.Options{})
	m := materializer.New(p, st, materializer.Options{Now: fixedClock(runTime)})
	for run := 1; run <= 2; run++ { // the second run replaces the first
		rep, err := m.Run(context.Background(), "v")
		if err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		got, gen := readAll(t, client, p, keysOf(want, larder.Int64Key(-1000), larder.Int64Key(1<<40)))
		if gen.ID != rep.Generation || gen.Rows != int64(len(want)) || gen.Fingerprint != p.View("v").Fingerprint() {
			t.Errorf("run %d: live generation = %+v; want id %d with %d rows", run, gen, rep.Generation, len(want))
		}
		if d := diffRows(got, want); d != "" {
			t.Errorf("run %d: rows read back differ from the brute-force result:\n%s", run, d)
		}
	}
}

// TestRedisBrokenFeaturePageAborts breaks a page that a run reads only once
// it has begun a generation: the run fails naming the file, the live
// generation keeps serving, and nothing of the failed run stays in Redis.
func TestRedisBrokenFeaturePageAborts(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client()
	ctx := context.Background()
	dir := t.TempDir()
	second := twoFiles(t, dir)
	p := projectFor(t, dir, "data", larder.TypeInt64, scoreFeature)
	st := store.New(client, p.Name, store.Options{})
	m := materializer.New(p, st, materializer.Options{Now: fixedClock(at(100))})
	first, err := m.Run(ctx, "v")
	if err != nil {
		t.Fatal(err)
	}
	keys := make([]larder.Key, 0, 6000)
	for i := range 3000 {
		keys = append(keys, larder.Int64Key(int64(i)), larder.Int64Key(int64(10000+i)))
	}
	before, _ := readAll(t, client, p, keys)
	keysBefore := allKeys(t, client)
	seq := "larder:" + p.Name + ":{v}:seq"
	seqBefore := client.Get(ctx, seq).Val()
	gens := "larder:" + p.Name + ":{v}:gens"
	gensBefore := client.ZRange(ctx, gens, 0, -1).Val()

	good, err := os.ReadFile(second)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(second, breakColumn(t, good, "score"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = m.Run(ctx, "v")
	if err == nil || !strings.Contains(err.Error(), second) {
		t.Fatalf("Run error = %v, want one naming %s", err, second)
	}
	if got := client.Get(ctx, seq).Val(); got == seqBefore {
		t.Fatalf("the failed run began no generation (seq %s): the test misses its point", got)
	}
	after, gen := readAll(t, client, p, keys)
	if gen.ID != first.Generation {
		t.Errorf("live generation = %d, want %d", gen.ID, first.Generation)
	}
	if d := diffRows(after, before); d != "" {
		t.Errorf("live rows changed:\n%s", d)
	}
	if d := diffKeys(keysBefore, allKeys(t, client)); d != "" {
		t.Errorf("the failed run left keys behind or removed some:\n%s", d)
	}
	if got := client.ZRange(ctx, gens, 0, -1).Val(); !slices.Equal(got, gensBefore) {
		t.Errorf("generations listed = %v, want %v", got, gensBefore)
	}
}

// allKeys returns every key in Redis but the generation counters, which
// runs advance whether they fail or not.
func allKeys(tb testing.TB, client *redis.Client) map[string]bool {
	tb.Helper()
	keys := make(map[string]bool)
	iter := client.Scan(context.Background(), 0, "*", 1000).Iterator()
	for iter.Next(context.Background()) {
		if !strings.HasSuffix(iter.Val(), ":seq") {
			keys[iter.Val()] = true
		}
	}
	if err := iter.Err(); err != nil {
		tb.Fatal(err)
	}
	return keys
}

// diffKeys lists the keys in one set and not the other.
func diffKeys(before, after map[string]bool) string {
	var b strings.Builder
	for k := range after {
		if !before[k] {
			fmt.Fprintf(&b, "added: %s\n", k)
		}
	}
	for k := range before {
		if !after[k] {
			fmt.Fprintf(&b, "removed: %s\n", k)
		}
	}
	return b.String()
}

const (
	childEnv      = "LARDER_MATERIALIZER_KILL_CHILD"
	childRedisEnv = "LARDER_MATERIALIZER_KILL_REDIS"
	childDirEnv   = "LARDER_MATERIALIZER_KILL_DIR"
	childWriting  = "WRITING"
)

// TestKilledRunChild is the process TestKilledRunKeepsLiveGeneration kills:
// it materializes a large source into the parent's redis-server, says so on
// stdout once rows are being written, and keeps writing slowly. It does
// nothing in a normal test run.
func TestKilledRunChild(t *testing.T) {
	if os.Getenv(childEnv) == "" {
		t.Skip("runs only as the child of TestKilledRunKeepsLiveGeneration")
	}
	client := redis.NewClient(&redis.Options{Addr: os.Getenv(childRedisEnv)})
	defer client.Close()
	p := projectFor(t, os.Getenv(childDirEnv), "large", larder.TypeInt64, scoreFeature)
	said := false
	m := materializer.New(p, store.New(client, p.Name, store.Options{BatchSize: 500}), materializer.Options{
		Now: fixedClock(at(1000)),
		Progress: func(pr materializer.Progress) {
			if pr.Phase != materializer.PhaseWriting || pr.EntitiesWritten == 0 {
				return
			}
			if !said {
				fmt.Printf("%s %d\n", childWriting, pr.EntitiesWritten)
				said = true
			}
			// Slow down, so that the parent kills a run that is writing.
			time.Sleep(50 * time.Millisecond)
		},
	})
	if _, err := m.Run(context.Background(), "v"); err != nil {
		t.Fatal(err)
	}
	fmt.Println("FINISHED: the parent should have killed this run")
}

func TestKilledRunKeepsLiveGeneration(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	srv := redistest.Start(t)
	client := srv.Client()
	ctx := context.Background()
	dir := t.TempDir()

	// The live generation: 2000 entities from a small source.
	var small []scoreRow
	for i := range 2000 {
		small = append(small, scoreRow{int64(i), at(i % 100), float64(i) / 3})
	}
	writeParquet(t, filepath.Join(dir, "small", "a.parquet"), small)
	p := projectFor(t, dir, "small", larder.TypeInt64, scoreFeature)
	first, err := materializer.New(p, store.New(client, p.Name, store.Options{}), materializer.Options{Now: fixedClock(at(1000))}).Run(ctx, "v")
	if err != nil {
		t.Fatal(err)
	}
	keys := make([]larder.Key, 0, 2000)
	for i := range 2000 {
		keys = append(keys, larder.Int64Key(int64(i)))
	}
	before, gen := readAll(t, client, p, keys)
	if gen.ID != first.Generation || len(before) != 2000 {
		t.Fatalf("first run: live generation %d with %d rows", gen.ID, len(before))
	}

	// The killed run: 200k entities of the same view, from another source.
	var large []scoreRow
	for i := range 200_000 {
		large = append(large, scoreRow{int64(i), at(500), -float64(i)})
	}
	writeParquet(t, filepath.Join(dir, "large", "a.parquet"), large)
	keysBefore := client.DBSize(ctx).Val()

	cmd := exec.Command(os.Args[0], "-test.run=^TestKilledRunChild$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), childEnv+"=1", childRedisEnv+"="+srv.Addr, childDirEnv+"="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	defer func() {
		if !killed {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()
	lines := bufio.NewScanner(out)
	var transcript []string
	for lines.Scan() {
		transcript = append(transcript, lines.Text())
		if strings.HasPrefix(lines.Text(), childWriting) {
			break
		}
	}
	if len(transcript) == 0 || !strings.HasPrefix(transcript[len(transcript)-1], childWriting) {
		t.Fatalf("the child never started writing; its output:\n%s", strings.Join(transcript, "\n"))
	}
	// Wait until the child's rows are in Redis, then kill it mid-write.
	deadline := time.Now().Add(10 * time.Second)
	for client.DBSize(ctx).Val() <= keysBefore+1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	during := client.DBSize(ctx).Val()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed = true
	werr := cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("the child was not killed mid-write (wait: %v)", werr)
	}
	if during <= keysBefore+1 {
		t.Fatalf("the child wrote no data keys before it was killed (%d keys before, %d during)", keysBefore, during)
	}
	t.Logf("killed the child after it wrote: %d keys in Redis before, %d while writing", keysBefore, during)

	after, gen := readAll(t, client, p, keys)
	if gen.ID != first.Generation {
		t.Errorf("live generation after the kill = %d, want %d", gen.ID, first.Generation)
	}
	if d := diffRows(after, before); d != "" {
		t.Errorf("the killed run changed the live rows:\n%s", d)
	}

	// The next run publishes normally.
	pl := projectFor(t, dir, "large", larder.TypeInt64, scoreFeature)
	next, err := materializer.New(pl, store.New(client, pl.Name, store.Options{}), materializer.Options{Now: fixedClock(at(1000))}).Run(ctx, "v")
	if err != nil {
		t.Fatalf("the run after the killed one: %v", err)
	}
	if next.Generation <= first.Generation+1 || next.EntitiesWritten != 200_000 {
		t.Errorf("next run = %+v; want a generation after the killed one's, with 200000 entities", next)
	}
	probe := []larder.Key{larder.Int64Key(0), larder.Int64Key(1999), larder.Int64Key(199_999)}
	got, gen := readAll(t, client, pl, probe)
	if gen.ID != next.Generation || len(got) != 3 || got[larder.Int64Key(199_999)].Values[0].Float64() != -199_999 {
		t.Errorf("after the next run: generation %d, rows %v", gen.ID, got)
	}
}
