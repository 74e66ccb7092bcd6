// Package parquettest holds what the tests of several packages need to
// read the Parquet files larder writes.
package parquettest

import (
	"os"
	"testing"

	"github.com/parquet-go/parquet-go"
)

// Open opens the Parquet file at path for the rest of the test.
func Open(tb testing.TB, path string) *parquet.File {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close() })
	st, err := f.Stat()
	if err != nil {
		tb.Fatal(err)
	}
	pf, err := parquet.OpenFile(f, st.Size())
	if err != nil {
		tb.Fatalf("open %s: %v", path, err)
	}
	return pf
}
