package store

// Kill stops the writer's heartbeat as a killed process would: its lease is
// no longer renewed, and the writer is left as it is.
func (w *Writer) Kill() { w.stopHeartbeat() }

// LeaseKey returns the key of the lease that holds the writer's generation.
func (w *Writer) LeaseKey() string { return w.leaseKey }

// CodecSchemas are the schemas the codec's fuzz targets decode against.
var CodecSchemas = codecSchemas
