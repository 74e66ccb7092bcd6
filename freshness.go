package larder

import "time"

// ViewFreshness is what is known of a view's runs besides its live
// generation: how its recent runs went and when it runs next. The server's
// ListViews reports it; whoever knows the run history and the schedule
// (the CLI's wiring, over the run log and the scheduler) fills it. The zero
// ViewFreshness means that nothing is known.
type ViewFreshness struct {
	// LastSuccess and LastFailure are the last run of the view that
	// succeeded and the last that failed; nil when none is recorded.
	LastSuccess, LastFailure *Run
	// NextRun is when the view's schedule runs it next; zero when the view
	// has no schedule or the time is not known.
	NextRun time.Time
	// TimeZone is the IANA name of the zone the view's schedule is read
	// in, such as "Europe/Paris"; "" when not known.
	TimeZone string
	// Shards is the number of shards the view's runs are split into; 0 and
	// 1 both mean one piece.
	Shards int
	// Streams are how far behind each stream that feeds the view its
	// consumers are, in the project's order.
	Streams []StreamLag
}

// StreamLag is how far the consumers of a stream are behind it.
type StreamLag struct {
	Stream string
	// Source is the Redis stream or Kafka topic, for people.
	Source string
	// Entries are the events not yet read by the stream's consumer group
	// (entries of a Redis stream, offsets of a Kafka topic), Pending those
	// read and not yet acknowledged (Redis only), and Seconds the age of
	// the oldest event not yet read; 0 when up to date.
	Entries, Pending int64
	Seconds          float64
	// Err says why the lag is not known; empty when it is.
	Err string
}
