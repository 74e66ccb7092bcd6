package larder

import (
	"context"
	"time"
)

// IncrementalStore is the write side of incremental runs of latest views,
// used by the materializer next to GenerationStore. An incremental run
// writes into the view's live generation instead of a new one, keeping for
// each entity the row with the newest event time, and moves the view's
// watermark forward when it succeeds.
type IncrementalStore interface {
	// BeginIncremental returns a writer into the live generation of v. Its
	// Put writes a row only when the entity has no stored row or one with
	// an event time no newer than the row's; rows become visible to readers
	// as they are flushed, not at Publish. Publish advances the
	// generation's watermark to the newest event time Put and announces the
	// change; Abort stops writing and leaves the watermark as it was (the
	// rows already flushed stay: each of them is valid on its own).
	//
	// It returns an error wrapping ErrNoGeneration when v has no live
	// generation (a full run must come first), ErrSchemaChanged when the
	// live generation was written with another schema than v's, and
	// ErrUnavailable or ctx.Err() when the store cannot be reached.
	BeginIncremental(ctx context.Context, v *View) (GenerationWriter, error)
	// Watermark returns the newest event time written into the live
	// generation of v by its full run and the incremental runs published
	// since: source data at or before it has been read. It is the zero time
	// when the generation records none. It returns an error wrapping
	// ErrNoGeneration when v has no live generation, and ErrUnavailable or
	// ctx.Err() when the store cannot be reached.
	Watermark(ctx context.Context, v *View) (time.Time, error)
}
