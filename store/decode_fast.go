package store

import (
	"math"
	"time"

	"github.com/larder-dev/larder"
)

// decodeNumbers decodes the row src, written by AppendRow with types, into
// numbers for a model input: out[j] is feature sel[j] read as a number
// (Value.Number), or defs[j] when that value is null or not numeric. scratch
// holds one number per feature and nulls one flag per feature; both have
// len(types). It returns the row's event time.
//
// Every value is walked and checked as DecodeRow checks it, so a row that
// DecodeRow refuses is refused here too (with an error wrapping
// ErrCorruptRow), but nothing is allocated: values that are not needed are
// skipped rather than built.
func decodeNumbers(src string, types []larder.Type, sel []int, defs []float32, out []float32, scratch []float32, nulls []bool) (time.Time, error) {
	d := decoder[string]{src: src}
	us, nullMap, err := d.header(len(types))
	if err != nil {
		return time.Time{}, err
	}

	for i, t := range types {
		if nullMap[i/8]&(1<<(i%8)) != 0 {
			nulls[i] = true
			continue
		}
		nulls[i] = false
		var err error
		switch t {
		case larder.TypeFloat64:
			var u uint64
			u, err = d.uint64()
			scratch[i] = float32(math.Float64frombits(u))
		case larder.TypeFloat32:
			var u uint32
			u, err = d.uint32()
			scratch[i] = math.Float32frombits(u)
		case larder.TypeInt64:
			var n int64
			n, err = d.varint()
			scratch[i] = float32(float64(n)) // as float32(Value.Number())
		case larder.TypeBool:
			var v larder.Value
			v, err = d.value(t)
			scratch[i] = 0
			if v.Bool() {
				scratch[i] = 1
			}
		default:
			nulls[i] = true // not a number: the input's default
			err = d.skip(t)
		}
		if err != nil {
			return time.Time{}, wrapFeature(i, t, err)
		}
	}
	if d.pos != len(src) {
		return time.Time{}, corrupt("%d bytes left over after the last feature", len(src)-d.pos)
	}
	for j, f := range sel {
		if f < 0 || f >= len(types) || nulls[f] {
			out[j] = defs[j]
			continue
		}
		out[j] = scratch[f]
	}
	return microsTime(us), nil
}

// skip moves past one non-null value of type t, checking it as value does
// but without building it.
func (d *decoder[S]) skip(t larder.Type) error {
	switch t {
	case larder.TypeString, larder.TypeBytes:
		n, err := d.uvarint()
		if err != nil {
			return err
		}
		if n > uint64(len(d.src)-d.pos) {
			return corrupt("length %d past the end", n)
		}
		d.pos += int(n)
		return nil
	case larder.TypeFloat32Vector:
		n, err := d.uvarint()
		if err != nil {
			return err
		}
		if n > uint64(len(d.src)-d.pos)/4 {
			return corrupt("vector of %d elements past the end", n)
		}
		d.pos += 4 * int(n)
		return nil
	case larder.TypeInt64List:
		n, err := d.uvarint()
		if err != nil {
			return err
		}
		if n > uint64(len(d.src)-d.pos) {
			return corrupt("list of %d elements past the end", n)
		}
		for range n {
			if _, err := d.varint(); err != nil {
				return err
			}
		}
		return nil
	case larder.TypeStringList:
		n, err := d.uvarint()
		if err != nil {
			return err
		}
		if n > uint64(len(d.src)-d.pos) {
			return corrupt("list of %d elements past the end", n)
		}
		for range n {
			size, err := d.uvarint()
			if err != nil {
				return err
			}
			if size > uint64(len(d.src)-d.pos) {
				return corrupt("length %d past the end", size)
			}
			d.pos += int(size)
		}
		return nil
	}
	_, err := d.value(t)
	return err
}
