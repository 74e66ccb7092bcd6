package store

import (
	"errors"
	"fmt"
	"math"
	"time"
	"unicode/utf8"

	"github.com/larder-dev/larder"
)

// codecVersion is the first byte of every encoded row. A reader that meets
// another version refuses the row instead of guessing.
const codecVersion = 1

// ErrCorruptRow means that a stored value is not a valid encoding of a row of
// its view's schema: truncated, of another codec version, or with bytes left
// over. Errors from DecodeRow and Read wrap it.
var ErrCorruptRow = errors.New("corrupt row")

// AppendRow appends the encoding of row against the feature types to dst and
// returns the extended slice.
//
// The encoding is schema-driven and carries no type tags: a version byte, the
// event time in unix microseconds (zigzag varint), a bitmap with one bit per
// feature set when the value is null, then each non-null value in feature
// order: int64 as a zigzag varint, float64 as 8 bytes and float32 as 4 bytes
// little-endian, bool as one byte, string and bytes as a uvarint length and
// the bytes, float32 vectors as a uvarint count and 4 bytes per element,
// int64 lists as a uvarint count and a zigzag varint per element, string
// lists as a uvarint count and, per element, a uvarint length and the bytes.
// Event times are kept to the microsecond.
//
// AppendRow returns an error, and dst unchanged, when row has another number
// of values than types or a non-null value of another type than its feature.
func AppendRow(dst []byte, types []larder.Type, row larder.Row) ([]byte, error) {
	if len(row.Values) != len(types) {
		return dst, fmt.Errorf("encode row: %d values for %d features", len(row.Values), len(types))
	}
	start := len(dst)
	dst = append(dst, codecVersion)
	dst = appendVarint(dst, eventMicros(row.EventTime))

	mapStart := len(dst)
	for range (len(types) + 7) / 8 {
		dst = append(dst, 0)
	}
	for i, v := range row.Values {
		if v.IsNull() {
			dst[mapStart+i/8] |= 1 << (i % 8)
			continue
		}
		if v.Type() != types[i] {
			return dst[:start], fmt.Errorf("encode row: feature %d is %s, got a %s value", i, types[i], v.Type())
		}
		switch types[i] {
		case larder.TypeInt64:
			dst = appendVarint(dst, v.Int64())
		case larder.TypeFloat64:
			dst = appendUint64(dst, math.Float64bits(v.Float64()))
		case larder.TypeFloat32:
			dst = appendUint32(dst, math.Float32bits(v.Float32()))
		case larder.TypeBool:
			if v.Bool() {
				dst = append(dst, 1)
			} else {
				dst = append(dst, 0)
			}
		case larder.TypeString, larder.TypeBytes:
			s := v.Str()
			if types[i] == larder.TypeString && !utf8.ValidString(s) {
				return dst[:start], fmt.Errorf("encode row: feature %d is a string that is not valid UTF-8 (%s): declare the feature bytes for binary data", i, larder.QuoteInput(s))
			}
			dst = appendUvarint(dst, uint64(len(s)))
			dst = append(dst, s...)
		case larder.TypeFloat32Vector:
			vec := v.Vector()
			dst = appendUvarint(dst, uint64(len(vec)))
			for _, f := range vec {
				dst = appendUint32(dst, math.Float32bits(f))
			}
		case larder.TypeInt64List:
			l := v.Int64List()
			dst = appendUvarint(dst, uint64(len(l)))
			for _, n := range l {
				dst = appendVarint(dst, n)
			}
		case larder.TypeStringList:
			l := v.StringList()
			dst = appendUvarint(dst, uint64(len(l)))
			for j, s := range l {
				if !utf8.ValidString(s) {
					return dst[:start], fmt.Errorf("encode row: feature %d, item %d is a string that is not valid UTF-8 (%s)", i, j, larder.QuoteInput(s))
				}
				dst = appendUvarint(dst, uint64(len(s)))
				dst = append(dst, s...)
			}
		default:
			return dst[:start], fmt.Errorf("encode row: feature %d has unsupported type %s", i, types[i])
		}
	}
	return dst, nil
}

// DecodeRow decodes src, written by AppendRow with the same types, into dst.
// It reuses the capacity of dst.Values; string, bytes, vector and list values
// are copied out of src, so src may be reused afterwards. Event times come back
// in UTC.
//
// DecodeRow returns an error wrapping ErrCorruptRow when src is not exactly
// one canonical encoding of a row of types; dst is then unspecified. It never
// panics on any input.
func DecodeRow(src []byte, types []larder.Type, dst *larder.Row) error {
	return decodeRow(src, types, dst)
}

// decodeRow is DecodeRow for both []byte and string sources, so that the read
// path decodes go-redis replies without copying them first. From a string
// source, string and bytes values and the strings of string lists share the
// source's memory, which is safe because strings are immutable.
func decodeRow[S ~string | ~[]byte](src S, types []larder.Type, dst *larder.Row) error {
	d := decoder[S]{src: src}
	us, nullMap, err := d.header(len(types))
	if err != nil {
		return err
	}

	vals := resize(dst.Values, len(types))
	for i, t := range types {
		if nullMap[i/8]&(1<<(i%8)) != 0 {
			vals[i] = larder.Null
			continue
		}
		var err error
		// The fixed-size types are decoded inline: this loop is the read
		// path's per-value cost.
		switch t {
		case larder.TypeFloat64:
			var u uint64
			u, err = d.uint64()
			vals[i] = larder.Float64Value(math.Float64frombits(u))
		case larder.TypeInt64:
			var n int64
			n, err = d.varint()
			vals[i] = larder.Int64Value(n)
		case larder.TypeFloat32:
			var u uint32
			u, err = d.uint32()
			vals[i] = larder.Float32Value(math.Float32frombits(u))
		default:
			vals[i], err = d.value(t)
		}
		if err != nil {
			dst.Values = vals[:i]
			return wrapFeature(i, t, err)
		}
	}
	dst.Values = vals
	if d.pos != len(src) {
		return corrupt("%d bytes left over after the last feature", len(src)-d.pos)
	}
	dst.EventTime = microsTime(us)
	return nil
}

type decoder[S ~string | ~[]byte] struct {
	src S
	pos int
}

// header reads what precedes the values of a row of n features: the codec
// version, the event time (in microseconds) and the null bitmap, whose bit
// i is set when feature i is null.
func (d *decoder[S]) header(n int) (us int64, nullMap S, err error) {
	if len(d.src) == 0 {
		return 0, nullMap, corrupt("empty value")
	}
	if d.src[0] != codecVersion {
		return 0, nullMap, corrupt("codec version %d, want %d", d.src[0], codecVersion)
	}
	d.pos = 1
	if us, err = d.varint(); err != nil {
		return 0, nullMap, err
	}
	mapLen := (n + 7) / 8
	if len(d.src)-d.pos < mapLen {
		return 0, nullMap, corrupt("truncated null bitmap")
	}
	nullMap = d.src[d.pos : d.pos+mapLen]
	d.pos += mapLen
	if rest := n % 8; rest != 0 && nullMap[mapLen-1]>>rest != 0 {
		return 0, nullMap, corrupt("null bitmap marks features past the last one")
	}
	return us, nullMap, nil
}

func wrapFeature(i int, t larder.Type, err error) error {
	return fmt.Errorf("feature %d (%s): %w", i, t, err)
}

func (d *decoder[S]) value(t larder.Type) (larder.Value, error) {
	switch t {
	case larder.TypeInt64:
		n, err := d.varint()
		return larder.Int64Value(n), err
	case larder.TypeFloat64:
		u, err := d.uint64()
		return larder.Float64Value(math.Float64frombits(u)), err
	case larder.TypeFloat32:
		u, err := d.uint32()
		return larder.Float32Value(math.Float32frombits(u)), err
	case larder.TypeBool:
		if d.pos >= len(d.src) {
			return larder.Null, corrupt("truncated bool")
		}
		b := d.src[d.pos]
		d.pos++
		if b > 1 {
			return larder.Null, corrupt("bool byte %d", b)
		}
		return larder.BoolValue(b == 1), nil
	case larder.TypeString, larder.TypeBytes:
		n, err := d.uvarint()
		if err != nil {
			return larder.Null, err
		}
		if n > uint64(len(d.src)-d.pos) {
			return larder.Null, corrupt("length %d past the end", n)
		}
		s := string(d.src[d.pos : d.pos+int(n)])
		d.pos += int(n)
		if t == larder.TypeString {
			return larder.StringValue(s), nil
		}
		return larder.BytesValueString(s), nil
	case larder.TypeFloat32Vector:
		n, err := d.uvarint()
		if err != nil {
			return larder.Null, err
		}
		if n > uint64(len(d.src)-d.pos)/4 {
			return larder.Null, corrupt("vector of %d elements past the end", n)
		}
		vec := make([]float32, n)
		for j := range vec {
			u, _ := d.uint32()
			vec[j] = math.Float32frombits(u)
		}
		return larder.Float32VectorValue(vec), nil
	case larder.TypeInt64List:
		n, err := d.uvarint()
		if err != nil {
			return larder.Null, err
		}
		// Every element takes at least one byte: a count past the end is
		// refused before anything is allocated for it.
		if n > uint64(len(d.src)-d.pos) {
			return larder.Null, corrupt("list of %d elements past the end", n)
		}
		l := make([]int64, n)
		for j := range l {
			if l[j], err = d.varint(); err != nil {
				return larder.Null, err
			}
		}
		return larder.Int64ListValue(l), nil
	case larder.TypeStringList:
		n, err := d.uvarint()
		if err != nil {
			return larder.Null, err
		}
		if n > uint64(len(d.src)-d.pos) {
			return larder.Null, corrupt("list of %d elements past the end", n)
		}
		l := make([]string, n)
		for j := range l {
			size, err := d.uvarint()
			if err != nil {
				return larder.Null, err
			}
			if size > uint64(len(d.src)-d.pos) {
				return larder.Null, corrupt("length %d past the end", size)
			}
			l[j] = string(d.src[d.pos : d.pos+int(size)])
			d.pos += int(size)
		}
		return larder.StringListValue(l), nil
	}
	return larder.Null, corrupt("unsupported type %s", t)
}

// uvarint reads a canonical (shortest) unsigned varint.
func (d *decoder[S]) uvarint() (uint64, error) {
	var x uint64
	for i := 0; i < binaryMaxVarintLen; i++ {
		if d.pos >= len(d.src) {
			return 0, corrupt("truncated varint")
		}
		b := d.src[d.pos]
		d.pos++
		if i == binaryMaxVarintLen-1 && b > 1 {
			return 0, corrupt("varint overflows 64 bits")
		}
		x |= uint64(b&0x7f) << (7 * i)
		if b < 0x80 {
			if b == 0 && i > 0 {
				return 0, corrupt("non-canonical varint")
			}
			return x, nil
		}
	}
	return 0, corrupt("varint overflows 64 bits")
}

func (d *decoder[S]) varint() (int64, error) {
	u, err := d.uvarint()
	return int64(u>>1) ^ -int64(u&1), err
}

func (d *decoder[S]) uint64() (uint64, error) {
	if len(d.src)-d.pos < 8 {
		return 0, corrupt("truncated float64")
	}
	s := d.src[d.pos : d.pos+8]
	d.pos += 8
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56, nil
}

func (d *decoder[S]) uint32() (uint32, error) {
	if len(d.src)-d.pos < 4 {
		return 0, corrupt("truncated float32")
	}
	s := d.src[d.pos : d.pos+4]
	d.pos += 4
	return uint32(s[0]) | uint32(s[1])<<8 | uint32(s[2])<<16 | uint32(s[3])<<24, nil
}

const binaryMaxVarintLen = 10

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorruptRow, fmt.Sprintf(format, args...))
}

func appendUvarint(dst []byte, x uint64) []byte {
	for x >= 0x80 {
		dst = append(dst, byte(x)|0x80)
		x >>= 7
	}
	return append(dst, byte(x))
}

func appendVarint(dst []byte, n int64) []byte {
	return appendUvarint(dst, uint64(n<<1)^uint64(n>>63))
}

func appendUint64(dst []byte, u uint64) []byte {
	return append(dst, byte(u), byte(u>>8), byte(u>>16), byte(u>>24),
		byte(u>>32), byte(u>>40), byte(u>>48), byte(u>>56))
}

func appendUint32(dst []byte, u uint32) []byte {
	return append(dst, byte(u), byte(u>>8), byte(u>>16), byte(u>>24))
}

// eventMicros maps an event time to unix microseconds; the zero time maps to
// its own microsecond count, so that it decodes to the zero time again.
func eventMicros(t time.Time) int64 { return t.UnixMicro() }

func microsTime(us int64) time.Time { return time.UnixMicro(us).UTC() }
