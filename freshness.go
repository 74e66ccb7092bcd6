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
}
