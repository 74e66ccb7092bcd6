package materializer

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/bits"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/parquet-go/parquet-go"

	"github.com/larder-dev/larder"
)

// readBufferSize is the buffer of each column chunk reader. Only one column
// chunk is read at a time, so a large buffer costs little and saves syscalls.
const readBufferSize = 256 << 10

// dataset is the open files of one source, in the order they are read.
type dataset struct {
	files []*sourceFile
	// rows is the number of rows of all files, from their footers.
	rows int64
	// input is set when the files are a scoring job's input rather than a
	// view's source, which changes what errors tell people to fix.
	input bool
	// config is the project file a fix of a view's source is made in.
	config string
}

// sourceFile is one open Parquet file and its columns bound to a view.
type sourceFile struct {
	path string
	osf  *os.File
	pf   *parquet.File
	cols []*boundColumn // in the order of the specs passed to bind
	// skip marks the row groups that are not read, by index; nil reads
	// them all. An incremental run sets it (see pruneBefore).
	skip []bool
}

// skips reports whether row group i of f is left unread.
func (f *sourceFile) skips(i int) bool { return f.skip != nil && f.skip[i] }

// rowGroup is one row group being read, with the column chunks of the bound
// columns.
type rowGroup struct {
	file    *sourceFile
	index   int
	numRows int64
	chunks  []parquet.ColumnChunk // all leaf columns of the row group
}

// chunk returns the bound column i and its chunk in rg.
func (rg *rowGroup) chunk(i int) (*boundColumn, parquet.ColumnChunk) {
	bc := rg.file.cols[i]
	return bc, rg.chunks[bc.leaf]
}

// openDataset resolves the path of src, a source of p, to its files and
// opens each of them, reading only their footers. It returns an error naming
// the source and the path when nothing matches or a file is not a readable
// Parquet file.
func openDataset(p *larder.Project, src *larder.Source) (*dataset, error) {
	ds, err := openFiles(p.Path(src.Path), "check the source path in "+p.FileName())
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", src.Name, err)
	}
	ds.config = p.FileName()
	return ds, nil
}

// openFiles resolves path to its files (see resolvePaths) and opens each of
// them, reading only their footers. hint says what to do when nothing
// matches.
func openFiles(path, hint string) (*dataset, error) {
	paths, err := resolvePaths(path, hint)
	if err != nil {
		return nil, err
	}
	ds := &dataset{files: make([]*sourceFile, 0, len(paths))}
	for _, p := range paths {
		f, err := openFile(p)
		if err != nil {
			ds.Close()
			return nil, err
		}
		ds.files = append(ds.files, f)
		ds.rows += f.pf.NumRows()
	}
	return ds, nil
}

// resolvePaths returns the files a source path names, sorted: the file
// itself; the *.parquet files directly inside a folder, except hidden ones
// (starting with "." or "_", as Hadoop and Spark write them); the files
// matching a glob (filepath.Match syntax, no "**"), where a matching folder
// stands for the *.parquet files inside it. A path that is there is a file
// or a folder, whatever characters its name holds. hint ends the error returned
// when nothing matches, saying what to check.
func resolvePaths(path, hint string) ([]string, error) {
	var matches []string
	// A file or folder that is there is read as it is named, even when its
	// name holds the characters of a pattern.
	if _, err := os.Stat(path); err != nil && strings.ContainsAny(path, "*?[") {
		m, err := filepath.Glob(path)
		if err != nil {
			return nil, fmt.Errorf("path %q is not a valid glob: %w", path, err)
		}
		if len(m) == 0 {
			return nil, fmt.Errorf("no files match %s: %s", path, hint)
		}
		matches = m
	} else {
		matches = []string{path}
	}
	var files []string
	for _, m := range matches {
		fi, err := os.Stat(m)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("%s does not exist: %s", m, hint)
			}
			return nil, err
		}
		if !fi.IsDir() {
			files = append(files, m)
			continue
		}
		entries, err := os.ReadDir(m)
		if err != nil {
			return nil, err
		}
		n := len(files)
		for _, e := range entries {
			name := e.Name()
			hidden := strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")
			if e.Type().IsRegular() && !hidden && strings.HasSuffix(name, ".parquet") {
				files = append(files, filepath.Join(m, e.Name()))
			}
		}
		if n == len(files) && len(matches) == 1 {
			return nil, fmt.Errorf("folder %s holds no .parquet files: %s", m, hint)
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no Parquet files match %s: %s", path, hint)
	}
	slices.Sort(files)
	return slices.Compact(files), nil
}

// openFile opens a Parquet file and reads its footer.
func openFile(path string) (*sourceFile, error) {
	osf, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	fi, err := osf.Stat()
	if err != nil {
		osf.Close()
		return nil, err
	}
	pf, err := openParquet(osf, fi.Size())
	if err != nil {
		osf.Close()
		return nil, fmt.Errorf("%s is not a readable Parquet file (%w): replace or remove it", path, err)
	}
	return &sourceFile{path: path, osf: osf, pf: pf}, nil
}

// openParquet turns a panic of the Parquet library on a malformed footer into
// an error.
func openParquet(osf *os.File, size int64) (pf *parquet.File, err error) {
	err = recoverRead(func() (err error) {
		pf, err = parquet.OpenFile(osf, size,
			parquet.SkipPageIndex(true),
			parquet.SkipBloomFilters(true),
			parquet.ReadBufferSize(readBufferSize))
		return err
	})
	return pf, err
}

// recoverRead runs read, and turns a panic of the Parquet library on a
// malformed footer or page into an error.
func recoverRead(read func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("malformed file: %v", r)
		}
	}()
	return read()
}

// Close closes every file of ds.
func (ds *dataset) Close() error {
	var errs []error
	for _, f := range ds.files {
		errs = append(errs, f.osf.Close())
	}
	return errors.Join(errs...)
}

// bind checks the columns of every file against specs, before any data is
// read. An optional column missing from a file is bound to nil in that
// file. It returns the *ColumnError of every problem of the first file that
// has any, joined.
func (ds *dataset) bind(specs []columnSpec) error {
	for _, f := range ds.files {
		f.cols = make([]*boundColumn, len(specs))
		var errs []error
		for i := range specs {
			bc, err := bindColumn(f.path, f.pf.Root(), &specs[i])
			if ce, ok := err.(*ColumnError); ok {
				if specs[i].optional && ce.Found == "" {
					continue
				}
				ce.Input, ce.config = ds.input, ds.config
			}
			if err != nil {
				errs = append(errs, err)
			}
			f.cols[i] = bc
		}
		if len(errs) > 0 {
			return errors.Join(errs...)
		}
	}
	return nil
}

// rowGroups returns every row group of every file that is not skipped, in
// read order.
func (ds *dataset) rowGroups() []*rowGroup {
	var out []*rowGroup
	for _, f := range ds.files {
		for i, g := range f.pf.RowGroups() {
			if f.skips(i) {
				continue
			}
			out = append(out, &rowGroup{file: f, index: i, numRows: g.NumRows(), chunks: g.ColumnChunks()})
		}
	}
	return out
}

// readWorkers is the number of goroutines that read row groups at once: one
// per core the Go scheduler uses.
func readWorkers() int { return max(1, runtime.GOMAXPROCS(0)) }

// scanPartitioned reads ds on parts goroutines at once, one per partition
// of the entities: worker p calls read(ctx, p, rg) for every row group rg, in
// file and row-group order, and read keeps only the rows of the entities of
// partition p (see partitioner). Each entity's rows are then folded by one
// worker in read order, exactly as a sequential read would, so results and
// ties stay deterministic; no state is shared between workers and memory
// does not grow with the number of workers. Every worker reads every row
// group: what is duplicated is the decoding of pages, what is divided is the
// per-row work.
//
// After every worker is done with a row group, done(rg) runs on the calling
// goroutine, in read order.
//
// scanPartitioned returns the error of the earliest row group, in read order,
// that any worker failed on, naming the file and the row group (a panic of
// the Parquet library becomes an error), or ctx.Err() when ctx ends. No worker
// reads past a failed row group, and every one reads all those before it, so
// the error returned does not depend on timing. It returns after every worker
// has stopped.
func scanPartitioned(ctx context.Context, ds *dataset, parts int,
	read func(ctx context.Context, part int, rg *rowGroup) error, done func(*rowGroup)) error {
	rgs := ds.rowGroups()
	parts = max(1, parts)
	// stop is the index of the earliest failed row group so far.
	var stop atomic.Int64
	stop.Store(int64(len(rgs)))
	var mu sync.Mutex
	var failed error
	failedAt, failedPart := len(rgs), parts
	fail := func(i, part int, err error) {
		mu.Lock()
		defer mu.Unlock()
		if i < failedAt || (i == failedAt && part < failedPart) {
			failed, failedAt, failedPart = err, i, part
		}
		for {
			cur := stop.Load()
			if int64(i) >= cur || stop.CompareAndSwap(cur, int64(i)) {
				return
			}
		}
	}

	passed := make(chan int, parts)
	var wg sync.WaitGroup
	for part := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i, rg := range rgs {
				if int64(i) >= stop.Load() {
					return
				}
				if err := ctx.Err(); err != nil {
					return
				}
				if err := readPart(ctx, part, rg, read); err != nil {
					fail(i, part, err)
					return
				}
				passed <- i
			}
		}()
	}
	go func() {
		wg.Wait()
		close(passed)
	}()

	count := make([]int, len(rgs))
	next := 0
	for i := range passed {
		count[i]++
		for next < len(rgs) && count[next] == parts {
			done(rgs[next])
			next++
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if failed != nil {
		rg := rgs[failedAt]
		return fmt.Errorf("%s row group %d cannot be read: %w; replace or remove the file", rg.file.path, rg.index, failed)
	}
	return nil
}

// readPart runs read, and turns a panic of the Parquet library on a
// malformed page into an error.
func readPart(ctx context.Context, part int, rg *rowGroup, read func(context.Context, int, *rowGroup) error) error {
	return recoverRead(func() error { return read(ctx, part, rg) })
}

// scanParallel reads the row groups of ds on up to workers goroutines at
// once, and hands what they produce to the calling goroutine in read order.
//
// For every row group, read runs on a worker and passes its results, in
// order, to emit; consume then receives them on the calling goroutine,
// strictly in file and row-group order and, within a row group, in emit
// order; done follows the last result of each row group. So consume sees
// exactly the sequence a sequential read would produce, whatever the timing
// of the workers, and a computation folding it stays deterministic.
//
// Memory is bounded: at most 2×workers row groups are in flight (taken by a
// worker and not yet consumed), each with at most scanBuffer results waiting
// besides the one its worker is building; emit blocks until consume catches
// up, and returns an error when the scan is stopping.
//
// scanParallel stops at the first error in read order, which it returns: the
// error of consume, or that of read naming the file and the row group (a
// panic of the Parquet library becomes an error), or ctx.Err() when ctx
// ends. It returns after every worker has stopped.
func scanParallel[T any](ctx context.Context, ds *dataset, workers int,
	read func(ctx context.Context, rg *rowGroup, emit func(T) error) error,
	consume func(T) error, done func(*rowGroup)) error {
	type job struct {
		rg  *rowGroup
		out chan T
		err error // set before out is closed
	}
	rgs := ds.rowGroups()
	jobs := make([]*job, len(rgs))
	for i, rg := range rgs {
		jobs[i] = &job{rg: rg, out: make(chan T, scanBuffer)}
	}
	workers = max(1, min(workers, len(jobs)))

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// A ticket is held from the moment a worker takes a job until the
	// calling goroutine has consumed all of it. Jobs are taken in order, so
	// the oldest unconsumed job is always taken, or about to be.
	tickets := make(chan struct{}, 2*workers)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case tickets <- struct{}{}:
				case <-wctx.Done():
					return
				}
				i := int(next.Add(1) - 1)
				if i >= len(jobs) {
					return
				}
				j := jobs[i]
				emit := func(v T) error {
					select {
					case j.out <- v:
						return nil
					case <-wctx.Done():
						return wctx.Err()
					}
				}
				j.err = readRowGroup(wctx, j.rg, read, emit)
				close(j.out)
			}
		}()
	}

	err := func() error {
		for _, j := range jobs {
			for {
				var v T
				var open bool
				select {
				case v, open = <-j.out:
				case <-ctx.Done():
					return ctx.Err()
				}
				if !open {
					break
				}
				if err := consume(v); err != nil {
					return err
				}
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			if j.err != nil {
				return fmt.Errorf("%s row group %d cannot be read: %w; replace or remove the file", j.rg.file.path, j.rg.index, j.err)
			}
			done(j.rg)
			<-tickets
		}
		return nil
	}()
	cancel()
	wg.Wait()
	return err
}

// scanBuffer is how many results of a row group can wait for the consuming
// goroutine while its worker builds the next one.
const scanBuffer = 2

// readRowGroup runs read on rg, and turns a panic of the Parquet library on
// a malformed page into an error.
func readRowGroup[T any](ctx context.Context, rg *rowGroup, read func(context.Context, *rowGroup, func(T) error) error, emit func(T) error) error {
	return recoverRead(func() error { return read(ctx, rg, emit) })
}

// partitioner assigns entity keys to one of n partitions, spreading them
// evenly by a hash of the key. The assignment depends only on the key and n.
type partitioner struct {
	n uint64
}

// ofInt returns the partition of int64 key k.
func (p partitioner) ofInt(k int64) int {
	if p.n <= 1 {
		return 0
	}
	// Fibonacci hashing, then a multiply-shift into [0, n).
	hi, _ := bits.Mul64(uint64(k)*0x9e3779b97f4a7c15, p.n)
	return int(hi)
}

// ofBytes returns the partition of the string key held in b.
func (p partitioner) ofBytes(b []byte) int {
	if p.n <= 1 {
		return 0
	}
	h := uint64(14695981039346656037) // FNV-1a
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	hi, _ := bits.Mul64(h*0x9e3779b97f4a7c15, p.n)
	return int(hi)
}
