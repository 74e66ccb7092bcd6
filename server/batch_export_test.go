package server

// SetBatcherRuns sets how many runs b may have in flight at once, which is
// GOMAXPROCS otherwise, so that tests do not depend on the machine.
func SetBatcherRuns(b *Batcher, n int) {
	b.mu.Lock()
	b.maxRuns = n
	b.mu.Unlock()
}
