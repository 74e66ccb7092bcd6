package demo

import (
	"cmp"
	"math"
	"math/rand/v2"
	"slices"
	"time"
)

// eventRow is one row of the events files.
type eventRow struct {
	UserID       int64   `parquet:"user_id"`
	ItemID       int64   `parquet:"item_id"`
	EventTime    int64   `parquet:"event_time,timestamp(millisecond)"`
	EventType    string  `parquet:"event_type,dict"`
	DwellSeconds float32 `parquet:"dwell_seconds"`
	// PricePaid is set for purchases only.
	PricePaid *float64 `parquet:"price_paid,optional"`
}

// The event types.
const (
	eventView     = "view"
	eventClick    = "click"
	eventPurchase = "purchase"
)

// eventPart is one events file: count events in [start, end) (Unix ms).
type eventPart struct {
	index      int
	count      int
	start, end int64
}

// eventParts splits total events over the History before now into files of
// about eventFileRows events, each covering its own stretch of time.
func eventParts(total int, now int64) []eventPart {
	n := max(1, (total+eventFileRows-1)/eventFileRows)
	span := History.Milliseconds()
	from := now - span
	parts := make([]eventPart, n)
	for k := range parts {
		parts[k] = eventPart{
			index: k,
			count: total*(k+1)/n - total*k/n,
			start: from + span*int64(k)/int64(n),
			end:   from + span*int64(k+1)/int64(n),
		}
	}
	return parts
}

// events returns the events of one file in time order, every event time
// distinct (to the millisecond) so that "the last event of a user" is never
// a tie.
//
// Each impression is a view; the user then clicks with the ground truth's
// probability, and a click becomes a purchase with a smaller one.
func (p *population) events(part eventPart) []eventRow {
	rng := rand.New(rand.NewPCG(p.seed, streamEvents+uint64(part.index)))
	rows := make([]eventRow, 0, part.count)
	// Impressions start early enough for their clicks and purchases (at
	// most 4 minutes later) to stay in the part's stretch of time.
	last := max(part.start+1, part.end-5*minute)
	for len(rows) < part.count {
		t := p.sampleTime(rng, part.start, last)
		u := &p.users[p.sampleUser(rng)]
		it := &p.items[p.sampleItem(rng, u)]
		z := p.logit(u, it, p.hourOf(t))
		rows = append(rows, eventRow{
			UserID:       u.row.UserID,
			ItemID:       it.row.ItemID,
			EventTime:    t,
			EventType:    eventView,
			DwellSeconds: dwell(rng, 3, 0.6),
		})
		if len(rows) == part.count || rng.Float64() >= sigmoid(z) {
			continue
		}
		t += 1000 + rng.Int64N(30_000)
		rows = append(rows, eventRow{
			UserID:       u.row.UserID,
			ItemID:       it.row.ItemID,
			EventTime:    t,
			EventType:    eventClick,
			DwellSeconds: dwell(rng, 25*math.Exp(0.3*u.logPref[it.cat]), 0.6),
		})
		if len(rows) == part.count || rng.Float64() >= sigmoid(z-1.5) {
			continue
		}
		t += 30_000 + rng.Int64N(180_000)
		paid := round(it.row.Price*(1-it.discount), 0.01)
		rows = append(rows, eventRow{
			UserID:       u.row.UserID,
			ItemID:       it.row.ItemID,
			EventTime:    t,
			EventType:    eventPurchase,
			DwellSeconds: dwell(rng, 90, 0.5),
			PricePaid:    &paid,
		})
	}
	slices.SortFunc(rows, compareEvents)
	for i := 1; i < len(rows); i++ {
		if rows[i].EventTime <= rows[i-1].EventTime {
			rows[i].EventTime = rows[i-1].EventTime + 1
		}
	}
	return rows
}

// compareEvents orders events by time, and events at the same time by
// everything else, so that the order does not depend on the sort algorithm.
func compareEvents(a, b eventRow) int {
	switch {
	case a.EventTime != b.EventTime:
		return cmp.Compare(a.EventTime, b.EventTime)
	case a.UserID != b.UserID:
		return cmp.Compare(a.UserID, b.UserID)
	case a.ItemID != b.ItemID:
		return cmp.Compare(a.ItemID, b.ItemID)
	case a.EventType != b.EventType:
		return cmp.Compare(a.EventType, b.EventType)
	}
	return cmp.Compare(a.DwellSeconds, b.DwellSeconds)
}

// sampleTime returns a time in [lo, hi) (Unix ms), more likely at the busy
// hours of the day.
func (p *population) sampleTime(rng *rand.Rand, lo, hi int64) int64 {
	const peak = 1.5 // at least the largest of hourShares
	for {
		t := lo + rng.Int64N(hi-lo)
		if rng.Float64()*peak < hourShares[p.hourOf(t)] {
			return t
		}
	}
}

// clockHour is the hour of the demo's day at which its data set ends
// (Options.Now): the demo's hours of the day are counted from Now, not from
// the wall clock's midnight, so that the data set, and the model trained
// on it, are the same whatever time of day the demo runs, shifted to end
// at Now.
const clockHour = 18

// midnight returns the start of the demo's day that Now falls in, in Unix
// milliseconds: clockHour hours before Now.
func (p *population) midnight() int64 { return p.now - clockHour*60*minute }

// HourOf returns the hour of the demo's day at t (see clockHour): the
// ranker's request feature hour_of_day for a request at t.
func (d *Dataset) HourOf(t time.Time) int { return d.pop.hourOf(t.UnixMilli()) }

// hourOf returns the hour of the demo's day of a Unix time in milliseconds
// (see clockHour).
func (p *population) hourOf(ms int64) int {
	const hour = 60 * minute
	r := (ms - p.midnight()) % day
	if r < 0 {
		r += day
	}
	return int(r / hour)
}

// dwell draws a log-normal dwell time in seconds with the given median,
// to a tenth of a second.
func dwell(rng *rand.Rand, median, sigma float64) float32 {
	return float32(round(median*math.Exp(sigma*rng.NormFloat64()), 0.1))
}
