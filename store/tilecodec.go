package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"strconv"
	"strings"
	"unsafe"

	"github.com/larder-dev/larder"
)

// The binary encodings of tiles (see tiles.go): the batch tiles of a
// generation (appendEntityTiles) and the stream tiles of an entity
// (appendStreamTiles). Both start with tileFormat, and write a partial
// (appendPartial) as:
//
//   - its count, a uvarint; nothing more when it is 0;
//   - for an aggregation of numbers, one byte that says, two bits per
//     statistic kept (sum, min, max, last, in that order), which of the
//     values that follow it is; then the distinct values, each a varint
//     for integers or a float (appendFloat); so a partial of one value,
//     or whose min or max is its last, holds that value once;
//   - when the aggregation keeps last: the time of its last value before
//     a reference time (appendSpan); for a string, its length and bytes.
//
// Times are written against a time close by (a tile's end, the cutoff, a
// tile's newest event), in milliseconds when they are whole ones.

// tileFormat is the version byte of the tile encodings.
const tileFormat = 1

// taggedTileFormat is the version byte of the tile encodings since they
// carry, after it, the tag of the view's definition they were written
// under (tilesTag), as 4 bytes little-endian: stream tiles outlive a
// generation, and a generation outlives a change of the tile, which
// leaves its schema as it was; a definition that changed (an
// aggregation's type, its functions, the tile) would read them as other
// numbers, or not at all. Tiles of tileFormat, written before, are read
// as of the reader's definition.
const taggedTileFormat = 2

// errOtherTiles is a batch tiles field written under another definition
// of the view than the reader's (see taggedTileFormat).
var errOtherTiles = errors.New("store: tiles of another definition of the view")

// readTag reads the format byte of a tile encoding and, when tagged, its
// tag; other is true when the tag is not tag.
func (r *tileReader) readTag(tag uint32) (other bool) {
	switch r.byte() {
	case tileFormat:
		return false
	case taggedTileFormat:
		b := r.bytes(4)
		return r.err == nil && binary.LittleEndian.Uint32(b) != tag
	}
	r.fail()
	return false
}

// errBadTiles is a tiles field that does not decode.
var errBadTiles = errors.New("store: tiles do not decode")

// pow10 are the scales appendFloat tries.
var pow10 = [...]float64{1, 10, 100, 1000, 10000}

// appendFloat appends the float64 of bits u: a varint n·8 + k when u is
// exactly n / 10^k for a small k (6.13 is 613 / 100, in 2 bytes), else the
// varint 7 and the 8 bytes of u.
func appendFloat(dst []byte, u uint64) []byte {
	f := math.Float64frombits(u)
	for k, p := range pow10 {
		x := f * p
		if !(x > -(1<<50) && x < 1<<50) {
			break // too large, or NaN
		}
		n := int64(math.Round(x))
		if math.Float64bits(float64(n)/p) == u {
			return binary.AppendVarint(dst, n*8+int64(k))
		}
	}
	dst = binary.AppendVarint(dst, 7)
	return binary.LittleEndian.AppendUint64(dst, u)
}

// appendSpan appends the duration d in ns (a varint of twice the
// milliseconds when d is whole ones, else of twice the ns plus one).
func appendSpan(dst []byte, d int64) []byte {
	if d%1e6 == 0 {
		return binary.AppendVarint(dst, d/1e6*2)
	}
	return binary.AppendVarint(dst, d*2+1)
}

// appendNumber appends value u of an aggregation of kind.
func appendNumber(dst []byte, kind byte, u uint64) []byte {
	if kind == 'f' {
		return appendFloat(dst, u)
	}
	return binary.AppendVarint(dst, int64(u))
}

// appendPartial appends p of an aggregation of spec sp; ref is a time at
// or after p's last value, which it is written against.
func appendPartial(dst []byte, sp tileSpec, p *larder.Partial, ref int64) []byte {
	dst = binary.AppendUvarint(dst, uint64(p.Count))
	if p.Count == 0 {
		return dst
	}
	if sp.kind != 's' {
		var vals [4]uint64
		var m byte
		n := 0
		for i, st := range [4]struct {
			on bool
			u  uint64
		}{{sp.sum, p.Sum}, {sp.min, p.Min}, {sp.max, p.Max}, {sp.last, p.Last}} {
			if !st.on {
				continue
			}
			j := 0
			for j < n && vals[j] != st.u {
				j++
			}
			if j == n {
				vals[n] = st.u
				n++
			}
			m |= byte(j) << (2 * i)
		}
		if n > 0 {
			dst = append(dst, m)
			for _, u := range vals[:n] {
				dst = appendNumber(dst, sp.kind, u)
			}
		}
	}
	if sp.last {
		dst = appendSpan(dst, ref-p.LastAt)
		if sp.kind == 's' {
			dst = binary.AppendUvarint(dst, uint64(len(p.LastStr)))
			dst = append(dst, p.LastStr...)
		}
	}
	return dst
}

// tileReader reads the tile encodings, from a string's bytes.
type tileReader struct {
	b   []byte
	err error
}

func (r *tileReader) fail() {
	r.err, r.b = errBadTiles, nil
}

func (r *tileReader) uvarint() uint64 {
	x, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return x
}

// varint reads a zigzag-encoded signed varint, as binary.AppendVarint
// writes it.
func (r *tileReader) varint() int64 {
	u := r.uvarint()
	return int64(u>>1) ^ -int64(u&1)
}

func (r *tileReader) byte() byte {
	if len(r.b) == 0 {
		r.fail()
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

// bytes returns the next n bytes, aliasing the encoding.
func (r *tileReader) bytes(n uint64) []byte {
	if uint64(len(r.b)) < n {
		r.fail()
		return nil
	}
	out := r.b[:n:n]
	r.b = r.b[n:]
	return out
}

func (r *tileReader) span() int64 {
	v := r.varint()
	if v&1 == 0 {
		return (v >> 1) * 1e6
	}
	return v >> 1
}

func (r *tileReader) number(kind byte) uint64 {
	v := r.varint()
	if kind != 'f' {
		return uint64(v)
	}
	k := v & 7
	if k == 7 {
		b := r.bytes(8)
		if b == nil {
			return 0
		}
		return binary.LittleEndian.Uint64(b)
	}
	if k >= int64(len(pow10)) {
		r.fail()
		return 0
	}
	return math.Float64bits(float64(v>>3) / pow10[k])
}

// partial reads a partial of appendPartial written against ref.
func (r *tileReader) partial(sp tileSpec, p *larder.Partial, ref int64) {
	*p = larder.Partial{Count: int64(r.uvarint())}
	if p.Count == 0 {
		return
	}
	if sp.kind != 's' && (sp.sum || sp.min || sp.max || sp.last) {
		m := r.byte()
		n := 0
		for i := range 4 {
			if on := [4]bool{sp.sum, sp.min, sp.max, sp.last}[i]; on {
				n = max(n, int(m>>(2*i)&3)+1)
			}
		}
		var vals [4]uint64
		for j := range n {
			vals[j] = r.number(sp.kind)
		}
		for i, dst := range [4]*uint64{&p.Sum, &p.Min, &p.Max, &p.Last} {
			if [4]bool{sp.sum, sp.min, sp.max, sp.last}[i] {
				*dst = vals[m>>(2*i)&3]
			}
		}
	}
	if sp.last {
		p.LastAt = ref - r.span()
		if sp.kind == 's' {
			// The encoding is a string, which never changes: the value
			// may share its bytes.
			if b := r.bytes(r.uvarint()); len(b) > 0 {
				p.LastStr = unsafe.String(&b[0], len(b))
			}
		}
	}
}

// appendEntityTiles appends the encoding of et, the batch tiles of an
// entity of a generation whose cutoff is tile c (tiles of tau ns): the
// format byte, then per aggregation the number of tiles, each tile's end
// (the first against c, then against the one before) and partial
// (against its end), then the number of window rests and the partial of
// each (against the cutoff).
func appendEntityTiles(dst []byte, specs []tileSpec, c, tau int64, tag uint32, et *larder.EntityTiles) []byte {
	dst = append(dst, taggedTileFormat)
	dst = binary.LittleEndian.AppendUint32(dst, tag)
	for a, sp := range specs {
		at := &et.Aggs[a]
		dst = binary.AppendUvarint(dst, uint64(len(at.Tiles)))
		prev := c
		for i := range at.Tiles {
			t := &at.Tiles[i]
			dst = binary.AppendVarint(dst, t.End-prev)
			prev = t.End
			dst = appendPartial(dst, sp, &t.Partial, t.End*tau)
		}
		dst = binary.AppendUvarint(dst, uint64(len(at.Rest)))
		for i := range at.Rest {
			dst = appendPartial(dst, sp, &at.Rest[i], c*tau)
		}
	}
	return dst
}

// decodeEntityTiles decodes an encoding of appendEntityTiles into et. It
// returns errOtherTiles when the encoding was written under a definition
// whose tag is not tag.
func decodeEntityTiles(src string, specs []tileSpec, c, tau int64, tag uint32, et *larder.EntityTiles) error {
	r := tileReader{b: unsafe.Slice(unsafe.StringData(src), len(src))} // read only
	if other := r.readTag(tag); r.err != nil {
		return r.err
	} else if other {
		return errOtherTiles
	}
	et.Aggs = resize(et.Aggs, len(specs))
	for a, sp := range specs {
		at := &et.Aggs[a]
		n := r.uvarint()
		if n > uint64(len(r.b)) {
			return errBadTiles
		}
		at.Tiles = resize(at.Tiles, int(n))
		prev := c
		for i := range at.Tiles {
			t := &at.Tiles[i]
			t.End = prev + r.varint()
			prev = t.End
			r.partial(sp, &t.Partial, t.End*tau)
		}
		n = r.uvarint()
		if n > uint64(len(r.b))+1 {
			return errBadTiles
		}
		at.Rest = resize(at.Rest, int(n))
		for i := range at.Rest {
			r.partial(sp, &at.Rest[i], c*tau)
		}
		if r.err != nil {
			return r.err
		}
	}
	return nil
}

// streamTile is one stream tile of an entity: its end (over τ), and, once
// decoded, the time of its newest event (Unix ns), the ids of the events
// added to it (encoded by appendEventID, one after the other) and one
// partial per aggregation. raw is its encoding as read, until it changes
// (nil then): a tile no event touches is written back as it was read.
type streamTile struct {
	end     int64
	raw     []byte
	decoded bool
	newest  int64
	nids    int
	ids     []byte
	parts   []larder.Partial
}

// hasID reports whether id, encoded by appendEventID, is one of t's.
func (t *streamTile) hasID(id []byte) bool {
	r := tileReader{b: t.ids}
	for range t.nids {
		start := r.b
		skipEventID(&r)
		if r.err != nil {
			return false
		}
		if bytes.Equal(start[:len(start)-len(r.b)], id) {
			return true
		}
	}
	return false
}

// appendStreamTiles appends the encoding of an entity's stream tiles, in
// increasing end, of tau ns: the format byte and the number of tiles,
// then per tile its end (the first in full, then against the one before),
// the length of the rest of it, and that rest: its newest event's time
// (against its end), its number of event ids and the ids, and per
// aggregation its partial (against its newest event). A tile with raw
// set is written from raw.
func appendStreamTiles(dst []byte, specs []tileSpec, tau int64, tag uint32, tiles []streamTile) []byte {
	dst = append(dst, taggedTileFormat)
	dst = binary.LittleEndian.AppendUint32(dst, tag)
	dst = binary.AppendUvarint(dst, uint64(len(tiles)))
	prev := int64(0)
	var body []byte
	for i := range tiles {
		t := &tiles[i]
		dst = binary.AppendVarint(dst, t.end-prev)
		prev = t.end
		if t.raw == nil {
			body = appendSpan(body[:0], t.end*tau-t.newest)
			body = binary.AppendUvarint(body, uint64(t.nids))
			body = append(body, t.ids...)
			for a, sp := range specs {
				body = appendPartial(body, sp, &t.parts[a], t.newest)
			}
			dst = binary.AppendUvarint(dst, uint64(len(body)))
			dst = append(dst, body...)
			continue
		}
		dst = binary.AppendUvarint(dst, uint64(len(t.raw)))
		dst = append(dst, t.raw...)
	}
	return dst
}

// decodeStreamTiles reads the tiles of an encoding of appendStreamTiles
// into tiles, reusing it, and returns them: their ends and raw encodings,
// which alias src; decode reads the rest of one. An empty src holds no
// tile, nor does one written under a definition whose tag is not tag:
// its events are not this definition's.
func decodeStreamTiles(src string, tag uint32, tiles []streamTile) ([]streamTile, error) {
	tiles = tiles[:0]
	if src == "" {
		return tiles, nil
	}
	r := tileReader{b: unsafe.Slice(unsafe.StringData(src), len(src))} // read only
	if other := r.readTag(tag); r.err != nil {
		return tiles, r.err
	} else if other {
		return tiles, nil
	}
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		return tiles, errBadTiles
	}
	tiles = resize(tiles, int(n))
	prev := int64(0)
	for i := range tiles {
		t := &tiles[i]
		t.end = prev + r.varint()
		prev = t.end
		t.raw = r.bytes(r.uvarint())
		t.decoded = false
		if r.err != nil {
			return tiles, r.err
		}
	}
	return tiles, nil
}

// decode reads t's newest event time, ids and partials from t.raw, once.
// The ids alias raw when keepIDs, and are left out otherwise.
func (t *streamTile) decode(specs []tileSpec, tau int64, keepIDs bool) error {
	if t.decoded {
		return nil
	}
	r := tileReader{b: t.raw}
	t.newest = t.end*tau - r.span()
	t.nids = int(r.uvarint())
	if t.nids > len(r.b) {
		return errBadTiles
	}
	start := r.b
	for range t.nids {
		skipEventID(&r)
	}
	t.ids = nil
	if keepIDs && r.err == nil {
		t.ids = start[: len(start)-len(r.b) : len(start)-len(r.b)]
	}
	if cap(t.parts) < len(specs) {
		t.parts = make([]larder.Partial, len(specs))
	}
	t.parts = t.parts[:len(specs)]
	for a, sp := range specs {
		r.partial(sp, &t.parts[a], t.newest)
	}
	if r.err == nil && len(r.b) != 0 {
		r.err = errBadTiles
	}
	t.decoded = r.err == nil
	return r.err
}

// appendEventID appends the encoding of an event's id: a Redis stream
// entry id (<ms>-<seq>) as 1 and two uvarints, a Kafka record's
// <partition>/<offset> as 2 and two uvarints, any other id as 0, its
// length and its bytes. Only the canonical decimals of numbers take the
// short forms, so that two ids encode alike only when they are equal.
func appendEventID(dst []byte, id string) []byte {
	for tag, sep := range [...]string{1: "-", 2: "/"} {
		if sep == "" {
			continue
		}
		a, b, ok := strings.Cut(id, sep)
		if !ok {
			continue
		}
		x, errA := strconv.ParseUint(a, 10, 64)
		y, errB := strconv.ParseUint(b, 10, 64)
		if errA == nil && errB == nil && strconv.FormatUint(x, 10) == a && strconv.FormatUint(y, 10) == b {
			dst = append(dst, byte(tag))
			dst = binary.AppendUvarint(dst, x)
			return binary.AppendUvarint(dst, y)
		}
	}
	dst = append(dst, 0)
	dst = binary.AppendUvarint(dst, uint64(len(id)))
	return append(dst, id...)
}

// skipEventID reads past an id of appendEventID.
func skipEventID(r *tileReader) {
	switch r.byte() {
	case 0:
		r.bytes(r.uvarint())
	case 1, 2:
		r.uvarint()
		r.uvarint()
	default:
		r.fail()
	}
}
