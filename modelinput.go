package larder

import "time"

// InputStatus says where a number of a model's input came from.
type InputStatus uint8

// The sources of a model input's number.
const (
	// InputPresent is a stored value, read as a number.
	InputPresent InputStatus = iota
	// InputMissing is the input's default: the entity has no row.
	InputMissing
	// InputStale is the input's default: the row is older than its view's
	// max age at the instant the input is built.
	InputStale
	// InputNull is the input's default: the value is null (or not a
	// number).
	InputNull
)

func (s InputStatus) String() string {
	switch s {
	case InputPresent:
		return "present"
	case InputMissing:
		return "missing"
	case InputStale:
		return "stale"
	case InputNull:
		return "null"
	}
	return "unknown"
}

// InputNumber returns the number a model sees for value x of a row of v
// read at instant at, and where it came from: x as a number
// (Value.Number, bools as 0 or 1, rounded to float32), or def, the input's
// default, when the entity has no row (found is false; x is then ignored),
// the row, of event time eventTime, is stale at at, or x is null. It is the
// one rule by which a ranker's Rank, a scoring job, a prediction view's run
// and a training-set export turn stored values into model inputs.
func (v *View) InputNumber(found bool, eventTime, at time.Time, x Value, def float32) (float32, InputStatus) {
	switch v.Status(found, eventTime, at) {
	case StatusNotFound:
		return def, InputMissing
	case StatusStale:
		return def, InputStale
	}
	if n, ok := x.Number(); ok {
		return float32(n), InputPresent
	}
	return def, InputNull
}
