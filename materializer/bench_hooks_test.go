package materializer

import (
	"github.com/parquet-go/parquet-go/compress"
	"github.com/parquet-go/parquet-go/format"
)

// FastSnappy is the Snappy codec the export writes its columns with, for
// the benchmarks' floors.
func FastSnappy() compress.Codec { return fastCodec(format.Snappy) }
