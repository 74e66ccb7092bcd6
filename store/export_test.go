package store

import "context"

// Kill stops the writer as a killed process would: its lease is no longer
// renewed, and its flushers stop without sending what it buffered. A
// killed writer may still call Publish, as a process that wakes up from a
// stall would; the rows it buffered are then not written.
func (w *Writer) Kill() {
	w.stopHeartbeat()
	_ = w.drain(context.Background(), false)
}

// LeaseKey returns the key of the lease that holds the writer's generation.
func (w *Writer) LeaseKey() string { return w.leaseKey }

// BucketOf is bucketOf, for the golden vectors of the bucket hash.
func BucketOf(canonical []byte, buckets uint32) uint32 { return bucketOf(canonical, buckets) }

// CompareRowsLua defines the scripts' comparison of two encoded rows by
// event time, for the benchmarks' floors.
const CompareRowsLua = compareRowsLua

// CodecVersion is the codec version AppendRow writes.
const CodecVersion = codecVersion

// WaitFlushed waits until every flusher of the writer has returned.
func (w *Writer) WaitFlushed() { <-w.flushed }

// Drain writes what the writer buffered and waits for every flush, as
// Publish does before it counts the rows.
func (w *Writer) Drain(ctx context.Context) error { return w.drain(ctx, true) }

// CodecSchemas are the schemas the codec's fuzz targets decode against.
var CodecSchemas = codecSchemas

// QueuedReads returns how many Reads wait for the next shared round trip.
func (s *Store) QueuedReads() int {
	s.reads.mu.Lock()
	defer s.reads.mu.Unlock()
	return len(s.reads.queue)
}
