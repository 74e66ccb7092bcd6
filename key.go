package larder

import (
	"fmt"
	"strconv"
	"unicode/utf8"
)

// Key is the key of one entity: an int64 or a string, as its Entity declares.
// The zero Key is invalid.
type Key struct {
	typ Type
	i   int64
	s   string
}

// Int64Key returns an int64 entity key.
func Int64Key(v int64) Key { return Key{typ: TypeInt64, i: v} }

// StringKey returns a string entity key.
func StringKey(v string) Key { return Key{typ: TypeString, s: v} }

// ParseKey parses s as a key of type t (TypeInt64 or TypeString), as typed by
// an operator on the command line. It returns an *InvalidError when s is not
// a valid key of that type; its message quotes at most the first 64 bytes of
// s.
func ParseKey(t Type, s string) (Key, error) {
	switch t {
	case TypeInt64:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return Key{}, Invalidf("key %s is not an int64", quoteInput(s))
		}
		return Int64Key(n), nil
	case TypeString:
		return StringKey(s), nil
	}
	return Key{}, Invalidf("entity keys cannot be of type %s", t)
}

// Type returns TypeInt64 or TypeString, or TypeInvalid for the zero Key.
func (k Key) Type() Type { return k.typ }

// Int64 returns the value of an int64 key, and 0 for a string key.
func (k Key) Int64() int64 { return k.i }

// Str returns the value of a string key, and "" for an int64 key.
func (k Key) Str() string { return k.s }

// AppendCanonical appends the canonical text of k to b: the decimal form of an
// int64 key, the bytes of a string key. Stores use it to build Redis fields.
func (k Key) AppendCanonical(b []byte) []byte {
	if k.typ == TypeInt64 {
		return strconv.AppendInt(b, k.i, 10)
	}
	return append(b, k.s...)
}

// String returns the canonical text of k (see AppendCanonical).
func (k Key) String() string {
	if k.typ == TypeInt64 {
		return strconv.FormatInt(k.i, 10)
	}
	return k.s
}

// Check returns an *InvalidError when k is not a key of entity e.
func (k Key) Check(e *Entity) error {
	if k.typ != e.KeyType {
		if k.typ == TypeInvalid {
			return Invalidf("missing %s key (entity %s)", e.KeyType, e.Name)
		}
		return Invalidf("key %s of entity %s must be %s, got %s", e.Key, e.Name, e.KeyType, k.typ)
	}
	if k.typ == TypeString && !utf8.ValidString(k.s) {
		return Invalidf("key %s of entity %s is a string that is not valid UTF-8: %s", e.Key, e.Name, quoteInput(k.s))
	}
	return nil
}

// GoString makes %#v readable in test failures.
func (k Key) GoString() string {
	if k.typ == TypeString {
		return fmt.Sprintf("larder.StringKey(%q)", k.s)
	}
	return fmt.Sprintf("larder.Int64Key(%d)", k.i)
}
