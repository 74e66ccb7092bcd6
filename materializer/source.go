package materializer

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/parquet-go/parquet-go"
)

// readBufferSize is the buffer of each column chunk reader. Only one column
// chunk is read at a time, so a large buffer costs little and saves syscalls.
const readBufferSize = 256 << 10

// dataset is the open files of one source, in the order they are read.
type dataset struct {
	files []*sourceFile
	// rows is the number of rows of all files, from their footers.
	rows int64
}

// sourceFile is one open Parquet file and its columns bound to a view.
type sourceFile struct {
	path string
	osf  *os.File
	pf   *parquet.File
	cols []*boundColumn // in the order of the specs passed to bind
}

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

// openDataset resolves a source path to its files and opens each of them,
// reading only their footers. It returns an error naming the source and the
// path when nothing matches or a file is not a readable Parquet file.
func openDataset(path, source string) (*dataset, error) {
	paths, err := resolvePaths(path)
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", source, err)
	}
	ds := &dataset{files: make([]*sourceFile, 0, len(paths))}
	for _, p := range paths {
		f, err := openFile(p)
		if err != nil {
			ds.Close()
			return nil, fmt.Errorf("source %s: %w", source, err)
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
// stands for the *.parquet files inside it.
func resolvePaths(path string) ([]string, error) {
	var matches []string
	if strings.ContainsAny(path, "*?[") {
		m, err := filepath.Glob(path)
		if err != nil {
			return nil, fmt.Errorf("path %q is not a valid glob: %w", path, err)
		}
		if len(m) == 0 {
			return nil, fmt.Errorf("no files match %s: check the source path in larder.yaml", path)
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
				return nil, fmt.Errorf("%s does not exist: check the source path in larder.yaml", m)
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
			return nil, fmt.Errorf("folder %s holds no .parquet files: check the source path in larder.yaml", m)
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no Parquet files match %s: check the source path in larder.yaml", path)
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
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("malformed file: %v", r)
		}
	}()
	return parquet.OpenFile(osf, size,
		parquet.SkipPageIndex(true),
		parquet.SkipBloomFilters(true),
		parquet.ReadBufferSize(readBufferSize))
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
// read. It returns the *ColumnError of every problem of the first file that
// has any, joined.
func (ds *dataset) bind(specs []columnSpec) error {
	for _, f := range ds.files {
		f.cols = make([]*boundColumn, len(specs))
		var errs []error
		for i := range specs {
			bc, err := bindColumn(f.path, f.pf.Root(), &specs[i])
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

// scan calls fn with every row group of every file, in order. It stops at the
// first error, which it returns naming the file and the row group, or when ctx
// ends, returning ctx.Err().
func (ds *dataset) scan(ctx context.Context, fn func(*rowGroup) error) error {
	for _, f := range ds.files {
		for i, g := range f.pf.RowGroups() {
			if err := ctx.Err(); err != nil {
				return err
			}
			rg := &rowGroup{file: f, index: i, numRows: g.NumRows(), chunks: g.ColumnChunks()}
			if err := scanRowGroup(rg, fn); err != nil {
				if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
					return err
				}
				return fmt.Errorf("%s row group %d cannot be read: %w; replace or remove the file", f.path, i, err)
			}
		}
	}
	return nil
}

// scanRowGroup turns a panic of the Parquet library on a malformed page into
// an error.
func scanRowGroup(rg *rowGroup, fn func(*rowGroup) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("malformed file: %v", r)
		}
	}()
	return fn(rg)
}
