package store

// Kill stops the writer's heartbeat as a killed process would: its lease is
// no longer renewed, and the writer is left as it is.
func (w *Writer) Kill() { w.stopHeartbeat() }

// LeaseKey returns the key of the lease that holds the writer's generation.
func (w *Writer) LeaseKey() string { return w.leaseKey }

// BucketOf is bucketOf, for the golden vectors of the bucket hash.
func BucketOf(canonical []byte, buckets uint32) uint32 { return bucketOf(canonical, buckets) }

// CodecVersion is the codec version AppendRow writes.
const CodecVersion = codecVersion

// WaitFlushed waits until every flusher of the writer has returned.
func (w *Writer) WaitFlushed() { <-w.flushed }
