package larder

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"time"
)

// Row is the stored value of one entity in one view: the values in the order
// of the view's features, and the event time of the data they came from.
type Row struct {
	EventTime time.Time
	Values    []Value
}

// Generation is one materialization run of a view, as the store records it.
type Generation struct {
	View string
	// ID increases with every run of the view; 0 means none.
	ID          int64
	Rows        int64
	Fingerprint string
	StartedAt   time.Time
	PublishedAt time.Time
	// Model is the version (Model.Version) of the model that computed the
	// generation of a prediction view; "" for other views.
	Model string
	// AsOf is the instant the generation was computed as of: source rows
	// after it were left out, and windows end at it.
	AsOf time.Time
	// Inputs are the generations of other views the generation was
	// computed from, in the order of the view's dependencies.
	Inputs []InputGeneration
	// Trigger is what started the run that wrote the generation, and Job
	// the id of its job, if it ran on a worker.
	Trigger Trigger
	Job     string
}

// Lookup is a read of one view's live generation for a list of keys. The
// caller sets View and Keys; FeatureStore.Read sets the rest.
type Lookup struct {
	View *View
	Keys []Key
	// Numbers, when not nil, asks for chosen features as numbers instead of
	// whole rows (see NumberRead); Rows[i] then holds only the event time.
	Numbers *NumberRead

	// Generation is the generation the rows were read from, and Model the
	// version of the model that computed it (prediction views only).
	Generation int64
	Model      string
	// Found[i] reports whether Keys[i] has a row; Rows[i] is that row.
	Found []bool
	Rows  []Row
}

// NumberRead asks a FeatureStore to decode chosen features of each row
// straight into float32 numbers, as a model's input needs them, rather than
// into Row.Values. The caller sets Features and Defaults; Read sets Values.
type NumberRead struct {
	// Features are indexes into the view's features; an index may repeat.
	Features []int
	// Defaults[j] is the number for Features[j] when its value is null or
	// not numeric, and for every feature of a key with no row.
	Defaults []float32
	// Values holds len(Features) numbers per key, row-major: Values[i*len(Features)+j]
	// is feature Features[j] of Keys[i], read as Value.Number does. Read
	// resizes it, reusing its capacity.
	Values []float32
}

// FeatureStore is the read side of the online store, used by the server and
// by the CLI.
type FeatureStore interface {
	// Read fills every lookup from its view's live generation, all in one
	// round trip. It returns an error wrapping ErrNoGeneration when a view
	// has never been published, ErrSchemaChanged when the live generation
	// was written with another schema, and ctx.Err() when ctx ends first.
	Read(ctx context.Context, lookups []*Lookup) error
	// Live returns the live generation of v, or an error wrapping
	// ErrNoGeneration.
	Live(ctx context.Context, v *View) (Generation, error)
}

// GenerationStore is the write side of the online store, used by the
// materializer.
type GenerationStore interface {
	// Begin starts a new generation of v that will hold about expectedRows
	// rows (negative: unknown), which lets the store size it. Nothing it
	// writes is visible to readers until Publish.
	Begin(ctx context.Context, v *View, expectedRows int64) (GenerationWriter, error)
}

// GenerationWriter writes one generation of one view. It is not safe for
// concurrent use unless the implementation says so.
type GenerationWriter interface {
	// ID returns the id of the generation being written.
	ID() int64
	// Put buffers the row of one entity; writes are flushed in pipelined
	// batches. Put is done with row when it returns, so the caller may reuse
	// row.Values. An error means the generation cannot be published.
	Put(ctx context.Context, key Key, row Row) error
	// Publish flushes what is buffered and makes the generation live in one
	// atomic step. The replaced generation is deleted after the grace period.
	Publish(ctx context.Context) (Generation, error)
	// Abort discards the generation. The live generation is untouched.
	Abort(ctx context.Context) error
}

// Fingerprint identifies the schema of v: its kind, its entity's key type and
// its features' names and types, in order. A generation records the
// fingerprint it was written with, so that a reader never decodes a value
// against another schema.
func (v *View) Fingerprint() string {
	h := sha256.New()
	h.Write([]byte(v.Kind))
	h.Write([]byte{0})
	if v.entity != nil {
		h.Write([]byte{byte(v.entity.KeyType)})
	}
	for _, f := range v.Features {
		h.Write([]byte(f.Name))
		h.Write([]byte{0, byte(f.Type)})
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}
