package materializer

import (
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/parquet-go/parquet-go"
)

// errCorrupt reports a page whose levels and values disagree.
var errCorrupt = errors.New("corrupt column chunk")

// eachPage calls fn with every data page of a column chunk, in order, and
// releases each page after fn returns. The page's buffers must not be used
// after that.
func eachPage(chunk parquet.ColumnChunk, fn func(parquet.Page) error) error {
	pages := chunk.Pages()
	defer pages.Close()
	for {
		p, err := pages.ReadPage()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		err = fn(p)
		parquet.Release(p)
		if err != nil {
			return err
		}
	}
}

// pageValues holds the non-null values of one page as typed slices, read in
// place from the page's buffers. When the page is dictionary-encoded, idx
// holds the indexes and the typed slices hold the dictionary.
type pageValues struct {
	idx  []int32
	i32  []int32
	i64  []int64
	f32  []float32
	f64  []float64
	bits []byte
	data []byte
	offs []uint32
	// n is the number of values of the page that can be addressed.
	n int
}

// loadValues returns the values of page p, of column bc. It returns an error
// when a dictionary index or a byte-array offset points outside its data.
func loadValues(p parquet.Page, bc *boundColumn) (pageValues, error) {
	var pv pageValues
	vals := p.Data()
	dictN := -1
	if d := p.Dictionary(); d != nil {
		pv.idx = vals.Int32()
		vals = d.Page().Data()
		dictN = d.Len()
	}
	var size int
	switch bc.kind {
	case parquet.Int32:
		pv.i32 = vals.Int32()
		size = len(pv.i32)
	case parquet.Int64:
		pv.i64 = vals.Int64()
		size = len(pv.i64)
	case parquet.Float:
		pv.f32 = vals.Float()
		size = len(pv.f32)
	case parquet.Double:
		pv.f64 = vals.Double()
		size = len(pv.f64)
	case parquet.Boolean:
		pv.bits = vals.Boolean()
		size = len(pv.bits) * 8
		if dictN < 0 {
			// The bitmap is padded to whole bytes: trust the page's count.
			size = min(size, int(p.NumValues()-p.NumNulls()))
		}
	case parquet.ByteArray:
		pv.data, pv.offs = vals.ByteArray()
		size = max(len(pv.offs)-1, 0)
		for i := 1; i < len(pv.offs); i++ {
			if pv.offs[i] < pv.offs[i-1] || int(pv.offs[i]) > len(pv.data) {
				return pv, fmt.Errorf("%w: byte array offsets out of range", errCorrupt)
			}
		}
	default:
		return pv, fmt.Errorf("%w: unexpected values of type %s", errCorrupt, bc.kind)
	}
	if pv.idx == nil {
		pv.n = size
		return pv, nil
	}
	if dictN > size {
		return pv, fmt.Errorf("%w: dictionary of %d values holds %d", errCorrupt, dictN, size)
	}
	for _, ix := range pv.idx {
		if uint32(ix) >= uint32(dictN) {
			return pv, fmt.Errorf("%w: dictionary index %d out of range [0, %d)", errCorrupt, ix, dictN)
		}
	}
	pv.n = len(pv.idx)
	return pv, nil
}

// pos returns where value i of the page is held in the typed slices.
func (pv *pageValues) pos(i int) int {
	if pv.idx != nil {
		return int(pv.idx[i])
	}
	return i
}

// num returns value i as the bits larder stores numbers and bools in:
// an int64, float64 bits or float32 bits, or 0 and 1. i must be below pv.n.
func (pv *pageValues) num(conv conversion, i int) uint64 {
	j := pv.pos(i)
	switch conv {
	case convInt64:
		return uint64(pv.i64[j])
	case convInt32:
		return uint64(int64(pv.i32[j]))
	case convUint32:
		return uint64(uint32(pv.i32[j]))
	case convDouble:
		return math.Float64bits(pv.f64[j])
	case convFloatToDouble:
		return math.Float64bits(float64(pv.f32[j]))
	case convFloat:
		return uint64(math.Float32bits(pv.f32[j]))
	case convInt64ToDouble:
		return math.Float64bits(float64(pv.i64[j]))
	case convInt32ToDouble:
		return math.Float64bits(float64(pv.i32[j]))
	case convUint32ToDouble:
		return math.Float64bits(float64(uint32(pv.i32[j])))
	case convInt32ToFloat:
		return uint64(math.Float32bits(float32(pv.i32[j])))
	case convDoubleToFloat:
		return uint64(math.Float32bits(float32(pv.f64[j])))
	case convInt64ToFloat:
		return uint64(math.Float32bits(float32(pv.i64[j])))
	case convBool:
		return uint64(pv.bits[j>>3]>>(j&7)) & 1
	}
	return 0
}

// bytes returns byte-array value i, sharing the page's buffer.
func (pv *pageValues) bytes(i int) []byte {
	j := pv.pos(i)
	return pv.data[pv.offs[j]:pv.offs[j+1]]
}

// float returns float value i.
func (pv *pageValues) float(i int) float32 { return pv.f32[pv.pos(i)] }

// eventTime returns value i of an event-time column in Unix nanoseconds.
func (pv *pageValues) eventTime(bc *boundColumn, i int) int64 {
	j := pv.pos(i)
	if bc.conv == convDate {
		return bc.nanosOf(int64(pv.i32[j]))
	}
	return bc.nanosOf(pv.i64[j])
}

// scalarPage is the layout of one page of a non-repeated column.
type scalarPage struct {
	// rows is the number of rows of the page.
	rows int
	// defs are the definition levels, nil when the column is required.
	defs   []byte
	maxDef byte
}

func newScalarPage(p parquet.Page, bc *boundColumn) scalarPage {
	sp := scalarPage{rows: int(p.NumValues()), maxDef: bc.maxDef}
	if bc.maxDef > 0 {
		sp.defs = p.DefinitionLevels()
		if len(sp.defs) != sp.rows {
			sp.rows = -1 // checked by the callers as a corrupt page
		}
	}
	return sp
}
