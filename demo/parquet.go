package demo

import (
	"context"
	"os"

	"github.com/parquet-go/parquet-go"
)

// writeParquet writes rows to path as one zstd-compressed Parquet file with
// row groups of rowGroupRows, in batches, calling done after each batch. It
// writes through a temporary file, so that path is either the old file or
// the complete new one; it returns ctx.Err() when ctx ends first.
func writeParquet[T any](ctx context.Context, path string, rows []T, done func(int)) (err error) {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	w := parquet.NewGenericWriter[T](f,
		parquet.Compression(&parquet.Zstd),
		parquet.MaxRowsPerRowGroup(rowGroupRows),
		parquet.WriteBufferSize(1<<20),
	)
	for len(rows) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(len(rows), writeBatch)
		if _, err := w.Write(rows[:n]); err != nil {
			return err
		}
		rows = rows[n:]
		done(n)
	}
	if err := w.Close(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
