package larder

import "context"

// KeyLister lists the entities stored in a view's live generation, which is
// how a prediction view finds the entities it scores. The store implements
// it next to FeatureStore.
type KeyLister interface {
	// Keys calls fn with successive batches of the keys of the entities in
	// the live generation of v, each key once, in no particular order. fn
	// must not keep the slice after it returns. Keys stops at the first
	// error fn returns and returns it as is; it returns an error wrapping
	// ErrNoGeneration when v has never been published, and ErrUnavailable
	// or ctx.Err() when the store cannot be read.
	Keys(ctx context.Context, v *View, fn func([]Key) error) error
}
