// Package materializer computes views from Parquet sources and writes each run
// into the online store as one new generation.
//
// A run has three parts that later view kinds reuse:
//
//   - the source reader (source.go, columns.go, pages.go, cursor.go) resolves
//     a source to its files, checks every needed column of every file against
//     the view's types before any data is read, and streams the column chunks
//     of each row group page by page, reading only the needed columns;
//   - a per-kind computation consumes row groups, in parallel across cores,
//     and keeps, per entity, only what it needs to emit that entity's row, so
//     that memory grows with entities, not rows: latest.go (the newest row),
//     aggregate.go (windowed accumulators), candidates.go (each context's
//     best candidates); prediction.go instead reads other views' live
//     generations in batches and scores them with a model;
//   - the writer (write.go) puts every entity's row into a new generation
//     through larder.GenerationStore and publishes it, or aborts it on any
//     failure so that the live generation keeps serving.
//
// Materializer.Run documents each kind's exact semantics; views that read
// other views are ordered with larder.Order by the caller.
//
// Materializer.Score (score.go) is the batch-scoring job: it reads a
// Parquet input of keys (and a ranker's request features) with the same
// source reader, builds each row's model input from the live generations
// as Rank or a prediction view's run would, and writes the scores to a
// Parquet file.
//
// Materializer.Export (export*.go) builds a training set: for every row of
// a spine of keys and timestamps, each view as a run at that row's
// timestamp would compute it, and a ranker's model input as Rank builds it,
// reading the sources with the same row loop (scanRows, rows.go) that runs
// use.
//
// # Sources
//
// A source path (relative to the project folder) names a Parquet file, a
// folder (every *.parquet file directly inside it, except names starting with
// "." or "_") or a glob in filepath.Match syntax (a matching folder stands for
// its *.parquet files).
// Files are read in sorted path order. Columns are top-level columns, found by
// name; any of them may be optional. Their Parquet types map to larder types
// as follows:
//
//	int64           INT64, or INT32 (signed, or unsigned up to 32 bits)
//	float64         DOUBLE, FLOAT, INT64 (rounded beyond 2^53), or INT32
//	                (signed, or unsigned up to 32 bits)
//	float32         FLOAT, or signed INT32 (rounded beyond 2^24)
//	bool            BOOLEAN
//	string          BYTE_ARRAY, unannotated or STRING, ENUM or JSON
//	bytes           BYTE_ARRAY, unannotated or STRING, ENUM, JSON or BSON
//	float32_vector  LIST of FLOAT (or a bare repeated FLOAT)
//	entity keys     int64 and string keys as above
//	event time      INT64 TIMESTAMP in MILLIS, MICROS or NANOS; INT32 DATE,
//	                read as midnight UTC
//
// Timestamps not adjusted to UTC are read as UTC; INT96 timestamps are not
// supported. A null list, or a list holding a null element, is a null
// float32_vector; an empty list is an empty vector.
package materializer
