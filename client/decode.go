package client

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"

	"google.golang.org/protobuf/encoding/protowire"

	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
)

// This file decodes the bytes of a GetFeaturesResponse straight into a
// Features, without building the message: for 20 columns of one row, the
// message takes 20 column messages, 20 names and 20 arrays, which a client
// pays for as allocations and then as collections. A Features holds one
// array per value type, which every column of the type shares, and a small
// descriptor per column; the names of columns and views, the same from one
// call to the next, are kept once per process (intern).

// Field numbers of larder.v1's GetFeaturesResponse, FeatureColumn, ViewRows
// and ViewGeneration.
const (
	respGenerations = 3
	respRowCount    = 4
	respColumns     = 5
	respViews       = 6

	colName          = 1
	colType          = 2
	colView          = 3
	colNullRows      = 4
	colInt64         = 10
	colFloat64       = 11
	colFloat32       = 12
	colBool          = 13
	colString        = 14
	colBytes         = 15
	colListLengths   = 16
	colFloat32Vector = 17
	colInt64List     = 18
	colStringList    = 19

	viewName       = 1
	viewStatuses   = 2
	viewEventTimes = 3

	genView       = 1
	genGeneration = 2
	genModel      = 3
	genTileTime   = 20
)

// errMalformed is the error of bytes that are not a GetFeaturesResponse.
var errMalformed = errors.New("not a GetFeaturesResponse: malformed protobuf")

// valuesField returns the field of FeatureColumn that holds the values of a
// column of type t (for a list type, its elements), or 0 for a type this
// client does not know.
func valuesField(t larderv1.ValueType) protowire.Number {
	switch t {
	case larderv1.ValueType_VALUE_TYPE_INT64:
		return colInt64
	case larderv1.ValueType_VALUE_TYPE_FLOAT64:
		return colFloat64
	case larderv1.ValueType_VALUE_TYPE_FLOAT32:
		return colFloat32
	case larderv1.ValueType_VALUE_TYPE_BOOL:
		return colBool
	case larderv1.ValueType_VALUE_TYPE_STRING:
		return colString
	case larderv1.ValueType_VALUE_TYPE_BYTES:
		return colBytes
	case larderv1.ValueType_VALUE_TYPE_FLOAT32_VECTOR:
		return colFloat32Vector
	case larderv1.ValueType_VALUE_TYPE_INT64_LIST:
		return colInt64List
	case larderv1.ValueType_VALUE_TYPE_STRING_LIST:
		return colStringList
	}
	return 0
}

// isList reports whether a column's values field holds list elements.
func isList(field protowire.Number) bool {
	return field == colFloat32Vector || field == colInt64List || field == colStringList
}

// DecodeFeatures decodes data, the bytes of a GetFeaturesResponse as a
// larder server sends them, into a Features, with the checks of
// NewFeatures. The Features does not refer to data. Fields it does not
// know, and known fields of another wire type than theirs, are skipped, as
// protobuf's own decoder skips them.
func DecodeFeatures(data []byte) (*Features, error) {
	f := &Features{}
	if err := f.decode(data); err != nil {
		return nil, err
	}
	return f, nil
}

// span is where a field's bytes lie in the message being decoded.
type span struct{ start, end int }

// fieldIter walks the fields of one message in the bytes being decoded. After a true
// next, num and typ are the field's number and wire type, v its value
// (varint and fixed wire types) and in where its contents lie (bytes wire
// type); after a false one, err says whether the message was malformed.
type fieldIter struct {
	raw []byte
	pos int // where the next field starts
	end int
	num protowire.Number
	typ protowire.Type
	v   uint64
	in  span
	err error
}

// iter returns a fieldIter over the message at s.
func (f *Features) iter(s span) fieldIter {
	return fieldIter{raw: f.data, pos: s.start, end: s.end}
}

func (it *fieldIter) next() bool {
	if it.pos >= it.end {
		return false
	}
	b := it.raw[it.pos:it.end]
	var (
		num protowire.Number
		typ protowire.Type
		n   int
	)
	if t := b[0]; t < 0x80 && t >= 1<<3 {
		// A field number below 16, as every field larder sends but a
		// generation's tile time: one byte.
		num, typ, n = protowire.Number(t>>3), protowire.Type(t&7), 1
	} else if num, typ, n = protowire.ConsumeTag(b); n < 0 {
		return it.fail()
	}
	b = b[n:]
	start := it.pos + n
	it.num, it.typ, it.v, it.in = num, typ, 0, span{}
	switch typ {
	case protowire.VarintType:
		it.v, n = protowire.ConsumeVarint(b)
	case protowire.Fixed64Type:
		n = -1
		if len(b) >= 8 {
			it.v, n = binary.LittleEndian.Uint64(b), 8
		}
	case protowire.Fixed32Type:
		n = -1
		if len(b) >= 4 {
			it.v, n = uint64(binary.LittleEndian.Uint32(b)), 4
		}
	case protowire.BytesType:
		var l uint64
		if len(b) > 0 && b[0] < 0x80 {
			l, n = uint64(b[0]), 1
		} else {
			l, n = protowire.ConsumeVarint(b)
		}
		if n >= 0 {
			if l > uint64(len(b)-n) {
				n = -1
			} else {
				it.in = span{start + n, start + n + int(l)}
				n += int(l)
			}
		}
	default:
		// Groups, long deprecated, are not part of larder's API: one is
		// skipped as any unknown field.
		n = protowire.ConsumeFieldValue(num, typ, b)
	}
	if n < 0 {
		return it.fail()
	}
	it.pos = start + n
	return true
}

func (it *fieldIter) fail() bool {
	it.err, it.pos = errMalformed, it.end
	return false
}

// elemType returns the wire type of one value of a repeated scalar field
// of FeatureColumn, or -1 for a field of another kind.
func elemType(num protowire.Number) protowire.Type {
	switch num {
	case colNullRows, colInt64, colBool, colListLengths, colInt64List:
		return protowire.VarintType
	case colFloat64:
		return protowire.Fixed64Type
	case colFloat32, colFloat32Vector:
		return protowire.Fixed32Type
	}
	return -1
}

// varints calls fn with each varint of a repeated varint field: its one
// value, or each value of a packed array.
func (f *Features) varints(it *fieldIter, fn func(uint64)) error {
	switch it.typ {
	case protowire.VarintType:
		fn(it.v)
	case protowire.BytesType:
		for b := f.data[it.in.start:it.in.end]; len(b) > 0; {
			x, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return errMalformed
			}
			fn(x)
			b = b[n:]
		}
	}
	return nil // another wire type: an unknown field, skipped
}

// decode fills f from data: the top level first, then the views, the
// generations and the columns. f does not refer to data once it returns.
func (f *Features) decode(data []byte) error {
	f.data = data
	defer func() {
		keepNames(f.fresh)
		f.data, f.fresh = nil, nil
	}()
	var cols, views, gens []span
	rows := int64(0)
	it := f.iter(span{0, len(data)})
	for it.next() {
		switch {
		case it.num == respRowCount && it.typ == protowire.VarintType:
			rows = int64(int32(it.v))
		case it.num == respColumns && it.typ == protowire.BytesType:
			cols = append(cols, it.in)
		case it.num == respViews && it.typ == protowire.BytesType:
			views = append(views, it.in)
		case it.num == respGenerations && it.typ == protowire.BytesType:
			gens = append(gens, it.in)
		}
	}
	if it.err != nil {
		return it.err
	}
	if rows < 0 {
		return fmt.Errorf("row_count %d is negative", rows)
	}
	f.rows = int(rows)
	if err := f.decodeViews(views); err != nil {
		return err
	}
	if err := f.decodeGenerations(gens); err != nil {
		return err
	}
	return f.decodeColumns(cols)
}

// decodeViews decodes the views' names, statuses and event times, each
// kind into one array.
func (f *Features) decodeViews(views []span) error {
	f.views = make([]viewRows, len(views))
	// Room for a status and a time per row and view, but never more than
	// the bytes can hold (a byte per value at least): a row_count that
	// lies must not allocate what it says.
	n := min(len(views)*f.rows, len(f.data))
	statuses := make([]larderv1.FeatureStatus, 0, n)
	times := make([]int64, 0, n)
	for i, s := range views {
		v := &f.views[i]
		from, fromT := len(statuses), len(times)
		it := f.iter(s)
		for it.next() {
			var err error
			switch it.num {
			case viewName:
				if it.typ == protowire.BytesType {
					v.name = f.intern(f.data[it.in.start:it.in.end])
				}
			case viewStatuses:
				err = f.varints(&it, func(x uint64) { statuses = append(statuses, larderv1.FeatureStatus(int32(x))) })
			case viewEventTimes:
				err = f.varints(&it, func(x uint64) { times = append(times, int64(x)) })
			}
			if err != nil {
				return err
			}
		}
		if it.err != nil {
			return it.err
		}
		v.statuses, v.times = statuses[from:len(statuses):len(statuses)], times[fromT:len(times):len(times)]
		if len(v.statuses) != f.rows || len(v.times) != f.rows {
			return fmt.Errorf("views[%d] (%s): %d statuses and %d event times for %d rows", i, v.name, len(v.statuses), len(v.times), f.rows)
		}
	}
	return nil
}

// decodeGenerations decodes each ViewGeneration.
func (f *Features) decodeGenerations(gens []span) error {
	f.gens = make([]generation, len(gens))
	for i, s := range gens {
		g := &f.gens[i]
		it := f.iter(s)
		for it.next() {
			switch {
			case it.num == genView && it.typ == protowire.BytesType:
				g.view = f.intern(f.data[it.in.start:it.in.end])
			case it.num == genModel && it.typ == protowire.BytesType:
				g.model = string(f.data[it.in.start:it.in.end]) // changes with each model loaded: not kept
			case it.num == genGeneration && it.typ == protowire.VarintType:
				g.generation = int64(it.v)
			case it.num == genTileTime && it.typ == protowire.VarintType:
				g.tileTime = int64(it.v)
			}
		}
		if it.err != nil {
			return it.err
		}
	}
	return nil
}

// columnCounts is what the first pass over a column finds: how many values
// its fields hold, by field number.
type columnCounts [colStringList + 1]int

// decodeColumns decodes the columns in two passes: the first reads each
// column's header and counts its values, the second copies the values of
// its type into the array of their type, its nulls into f.nulls and its
// list offsets into f.offsets, all sized by the first.
func (f *Features) decodeColumns(cols []span) error {
	f.cols = make([]column, len(cols))
	// The values field of each column that has one and no other field the
	// second pass reads (nulls, list lengths): the second pass copies its
	// values without walking the column again.
	var onlyBuf [32]fieldIter
	only := onlyBuf[:0]
	if len(cols) > len(onlyBuf) {
		only = make([]fieldIter, 0, len(cols))
	}
	var need columnCounts
	nullCols, listCols := 0, 0
	for i, s := range cols {
		c := &f.cols[i]
		c.nulls, c.offsets = noNulls, -1
		only = append(only, fieldIter{})
		var n columnCounts
		var first fieldIter // the first of the fields from colInt64 on
		others := 0         // and how many came after it
		it := f.iter(s)
		for it.next() {
			switch {
			case it.num == colName && it.typ == protowire.BytesType:
				c.name = f.intern(f.data[it.in.start:it.in.end])
			case it.num == colType && it.typ == protowire.VarintType:
				c.typ = larderv1.ValueType(int32(it.v))
			case it.num == colView && it.typ == protowire.VarintType:
				c.view = int32(it.v)
			case it.num >= colNullRows && int(it.num) < len(n):
				k, err := f.count(&it)
				if err != nil {
					return err
				}
				n[it.num] += k
				if it.num >= colInt64 {
					if first.num == 0 {
						first = it
					} else {
						others++
					}
				}
			}
		}
		if it.err != nil {
			return it.err
		}
		if int(c.view) < 0 || int(c.view) >= len(f.views) {
			return fmt.Errorf("columns[%d] (%s): view %d, but the response has %d views", i, c.name, c.view, len(f.views))
		}
		field := valuesField(c.typ)
		if field == 0 {
			// A type this client does not know: every row reads as null.
			c.nulls = allNull
			continue
		}
		rows := n[field]
		if isList(field) {
			rows = n[colListLengths]
		}
		if rows != f.rows {
			return fmt.Errorf("columns[%d] (%s): %d values of type %s for %d rows", i, c.name, rows, c.typ, f.rows)
		}
		need[field] += n[field]
		if n[colNullRows] > 0 {
			c.nulls = nullCols * f.rows
			nullCols++
		}
		if isList(field) {
			listCols++
		}
		if first.num == field && others == 0 && n[colNullRows] == 0 && !isList(field) {
			only[i] = first
		}
	}

	f.int64s = make([]int64, 0, need[colInt64]+need[colInt64List])
	f.float64s = make([]float64, 0, need[colFloat64])
	f.float32s = make([]float32, 0, need[colFloat32]+need[colFloat32Vector])
	f.bools = make([]bool, 0, need[colBool])
	f.strings = make([]string, 0, need[colString]+need[colStringList])
	f.bytes = make([][]byte, 0, need[colBytes])
	f.nulls = make([]bool, nullCols*f.rows)
	f.offsets = make([]int, 0, listCols*(f.rows+1))
	for i, s := range cols {
		if only[i].num != 0 {
			f.cols[i].start = f.arrayLen(only[i].num)
			if err := f.values(&only[i]); err != nil {
				return err
			}
			continue
		}
		if err := f.decodeColumn(i, s); err != nil {
			return err
		}
	}
	return nil
}

// decodeColumn is decodeColumns' second pass over column i.
func (f *Features) decodeColumn(i int, s span) error {
	c := &f.cols[i]
	field := valuesField(c.typ)
	if field == 0 {
		return nil
	}
	c.start = f.arrayLen(field)
	if isList(field) {
		c.offsets = len(f.offsets)
		f.offsets = append(f.offsets, 0)
	}
	var bad error
	it := f.iter(s)
	for it.next() {
		var err error
		switch {
		case it.num == field:
			err = f.values(&it)
		case it.num == colListLengths && c.offsets >= 0:
			err = f.varints(&it, func(x uint64) {
				l := int(int32(x))
				if l < 0 && bad == nil {
					bad = fmt.Errorf("columns[%d] (%s): row %d has a list of %d elements", i, c.name, len(f.offsets)-c.offsets-1, l)
				}
				f.offsets = append(f.offsets, f.offsets[len(f.offsets)-1]+max(l, 0))
			})
		case it.num == colNullRows && c.nulls >= 0:
			err = f.varints(&it, func(x uint64) {
				if r := int(int32(x)); r >= 0 && r < f.rows {
					f.nulls[c.nulls+r] = true
				} else if bad == nil {
					bad = fmt.Errorf("columns[%d] (%s): null row %d of %d rows", i, c.name, r, f.rows)
				}
			})
		}
		if err != nil {
			return err
		}
	}
	if it.err != nil {
		return it.err
	}
	if bad != nil {
		return bad
	}
	if c.offsets >= 0 {
		elems := f.arrayLen(field) - c.start
		if total := f.offsets[len(f.offsets)-1]; total != elems {
			return fmt.Errorf("columns[%d] (%s): list lengths add up to %d, but the column has %d elements", i, c.name, total, elems)
		}
	}
	return nil
}

// arrayLen returns the length of the array that the values of field, a
// column's values field, go to.
func (f *Features) arrayLen(field protowire.Number) int {
	switch field {
	case colInt64, colInt64List:
		return len(f.int64s)
	case colFloat64:
		return len(f.float64s)
	case colFloat32, colFloat32Vector:
		return len(f.float32s)
	case colBool:
		return len(f.bools)
	case colString, colStringList:
		return len(f.strings)
	case colBytes:
		return len(f.bytes)
	}
	return 0
}

// count returns how many values the field at it holds: one for a value of
// the field's own wire type, a packed array's values, none for another
// wire type (an unknown field, skipped).
func (f *Features) count(it *fieldIter) (int, error) {
	elem := elemType(it.num)
	switch {
	case elem < 0:
		if it.typ == protowire.BytesType {
			return 1, nil
		}
		return 0, nil
	case it.typ == elem:
		return 1, nil
	case it.typ != protowire.BytesType:
		return 0, nil
	}
	b := f.data[it.in.start:it.in.end]
	size := 8
	switch elem {
	case protowire.Fixed32Type:
		size = 4
	case protowire.VarintType:
		// A varint ends at each byte below 0x80; a last one left open, or
		// one too long, fails when it is decoded.
		n := 0
		for i := 0; i < len(b); i++ {
			if b[i] < 0x80 {
				n++
			}
		}
		return n, nil
	}
	if len(b)%size != 0 {
		return 0, errMalformed
	}
	return len(b) / size, nil
}

// values appends the values of the column's values field at it to the
// array of their type.
func (f *Features) values(it *fieldIter) error {
	field, elem := it.num, elemType(it.num)
	switch {
	case elem < 0:
		if it.typ != protowire.BytesType {
			return nil
		}
		if field == colBytes {
			f.bytes = append(f.bytes, bytes.Clone(f.data[it.in.start:it.in.end]))
		} else {
			f.strings = append(f.strings, string(f.data[it.in.start:it.in.end]))
		}
		return nil
	case it.typ == elem:
		f.value(field, it.v)
		return nil
	case it.typ != protowire.BytesType:
		return nil
	}
	// A packed array, decoded in a loop of its own per type.
	b := f.data[it.in.start:it.in.end]
	switch field {
	case colFloat64:
		for ; len(b) >= 8; b = b[8:] {
			f.float64s = append(f.float64s, math.Float64frombits(binary.LittleEndian.Uint64(b)))
		}
	case colFloat32, colFloat32Vector:
		for ; len(b) >= 4; b = b[4:] {
			f.float32s = append(f.float32s, math.Float32frombits(binary.LittleEndian.Uint32(b)))
		}
	default:
		for len(b) > 0 {
			x, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return errMalformed
			}
			f.value(field, x)
			b = b[n:]
		}
	}
	if len(b) > 0 {
		return errMalformed
	}
	return nil
}

// value appends one value of a column's values field.
func (f *Features) value(field protowire.Number, x uint64) {
	switch field {
	case colInt64, colInt64List:
		f.int64s = append(f.int64s, int64(x))
	case colFloat64:
		f.float64s = append(f.float64s, math.Float64frombits(x))
	case colFloat32, colFloat32Vector:
		f.float32s = append(f.float32s, math.Float32frombits(uint32(x)))
	case colBool:
		f.bools = append(f.bools, x != 0)
	}
}

// interned holds the names decoded so far, so that the names of a
// response, the same from one call to the next, are not allocated again:
// a map that is replaced, never changed, so that readers need no lock. A
// decode adds the names it did not find all at once, when it ends
// (keepNames).
var (
	interned   atomic.Pointer[map[string]string]
	internMu   sync.Mutex
	internSize = 4096 // names kept at most; past that, each is allocated
)

// intern returns b as a string: the one kept when b was seen before, else
// a new one, which the decode keeps (keepNames) when it ends.
func (f *Features) intern(b []byte) string {
	if m := interned.Load(); m != nil {
		if s, ok := (*m)[string(b)]; ok {
			return s
		}
	}
	s := string(b)
	f.fresh = append(f.fresh, s)
	return s
}

// keepNames adds the names of a decode that were not kept yet, with one
// copy of the map, while it holds fewer than internSize.
func keepNames(names []string) {
	if len(names) == 0 {
		return
	}
	if m := interned.Load(); m != nil && len(*m) >= internSize {
		return
	}
	internMu.Lock()
	defer internMu.Unlock()
	var old map[string]string
	if p := interned.Load(); p != nil {
		old = *p
	}
	if len(old) >= internSize {
		return
	}
	m := make(map[string]string, len(old)+len(names))
	for k, v := range old {
		m[k] = v
	}
	for _, s := range names {
		if len(m) >= internSize {
			break
		}
		m[s] = s
	}
	interned.Store(&m)
}
