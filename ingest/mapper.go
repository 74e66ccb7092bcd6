// Package ingest applies the events of streams (Redis streams, Kafka
// topics) to their views between runs: to latest views through the
// store's Push, the same write-if-newer path as the Push RPC, and to
// streaming aggregate views through the store's tiles (larder.TileStore),
// each event once by its id.
package ingest

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/larder-dev/larder"
)

// Mapper turns the values of one event into a row of its stream's view:
// for a latest view, the value of each feature; for an aggregate view, the
// value of each aggregation's column (null for a count of rows).
type Mapper struct {
	stream *larder.Stream
	view   *larder.View
	fields []string         // the field of each feature, or of each aggregation's column
	now    func() time.Time // larder ingest's clock; nil is time.Now
}

// NewMapper returns the mapper of s, a stream of a validated project.
func NewMapper(s *larder.Stream) *Mapper {
	v := s.ViewDef()
	if v.Kind == larder.KindAggregate {
		m := &Mapper{stream: s, view: v, fields: make([]string, len(v.Aggregations))}
		for i, a := range v.Aggregations {
			if a.Column != "" {
				m.fields[i] = s.ColumnField(a.Column)
			}
		}
		return m
	}
	m := &Mapper{stream: s, view: v, fields: make([]string, len(v.Features))}
	for i, f := range v.Features {
		m.fields[i] = s.FieldOf(f)
	}
	return m
}

// View returns the view the events are rows of.
func (m *Mapper) View() *larder.View { return m.view }

// Row returns the row of an event whose values get returns by field name:
// strings (a Redis stream entry), or JSON values decoded with UseNumber (a
// Kafka record). A field that is missing or null is a null feature. The
// error says why the event can never apply: a missing or bad key or event
// time (one more than larder.MaxEventSkew past the clock included, as the
// Push RPC refuses it), or a value that does not fit its feature.
func (m *Mapper) Row(get func(field string) (any, bool)) (larder.PushRow, error) {
	return m.RowReceived(get, Received{})
}

// Received is a time by a clock other than larder ingest's that an event
// was taken in by: Redis's clock when the consumer read a batch of stream
// entries, or the time a Kafka broker appended a record. The zero Received
// is unknown.
type Received struct {
	At    time.Time
	Clock string // whose clock At is, as an error names it
}

// RowReceived is Row for an event that the transport took in at r. The
// event time is checked against the later of r and larder ingest's clock,
// so that a host whose clock runs behind does not refuse events that were
// not from the future when they were sent.
func (m *Mapper) RowReceived(get func(field string) (any, bool), r Received) (larder.PushRow, error) {
	var row larder.PushRow
	e := m.view.EntityDef()
	raw, ok := get(m.stream.Key)
	if !ok || raw == nil {
		return row, fmt.Errorf("no entity key: field %q is missing", m.stream.Key)
	}
	key, err := keyOf(raw, e.KeyType)
	if err != nil {
		return row, fmt.Errorf("entity key (field %q): %w", m.stream.Key, err)
	}
	if err := key.Check(e); err != nil {
		return row, err
	}
	raw, ok = get(m.stream.EventTime)
	if !ok || raw == nil {
		return row, fmt.Errorf("no event time: field %q is missing", m.stream.EventTime)
	}
	at, err := timeOf(raw)
	if err == nil {
		now, clock := time.Now, "the clock of larder ingest"
		if m.now != nil {
			now = m.now
		}
		ref := now()
		if r.At.After(ref) {
			ref, clock = r.At, r.Clock
		}
		err = larder.CheckEventTime(at, ref, clock)
	}
	if err != nil {
		return row, fmt.Errorf("event time (field %q): %w", m.stream.EventTime, err)
	}
	values := make([]larder.Value, len(m.fields))
	if m.view.Kind == larder.KindAggregate {
		for i, a := range m.view.Aggregations {
			raw, ok := get(m.fields[i])
			if a.Column == "" || !ok || raw == nil {
				values[i] = larder.Null
				continue
			}
			if values[i], err = valueOf(raw, a.Type); err != nil {
				return row, fmt.Errorf("column %s (field %q): %w", a.Column, m.fields[i], err)
			}
		}
		return larder.PushRow{Key: key, Row: larder.Row{EventTime: at, Values: values}}, nil
	}
	for i, f := range m.view.Features {
		raw, ok := get(m.fields[i])
		if !ok || raw == nil {
			values[i] = larder.Null
			continue
		}
		if values[i], err = valueOf(raw, f.Type); err != nil {
			return row, fmt.Errorf("feature %s (field %q): %w", f.Name, m.fields[i], err)
		}
		var refused string
		if values[i], refused = m.view.ApplyValueRules(&m.view.Features[i], values[i]); refused != "" {
			return row, fmt.Errorf("feature %s (field %q): %s", f.Name, m.fields[i], refused)
		}
	}
	return larder.PushRow{Key: key, Row: larder.Row{EventTime: at, Values: values}}, nil
}

// text returns raw as text: a string as is, a JSON number as written.
func text(raw any) (string, bool) {
	switch x := raw.(type) {
	case string:
		return x, true
	case json.Number:
		return x.String(), true
	}
	return "", false
}

func keyOf(raw any, t larder.Type) (larder.Key, error) {
	s, ok := text(raw)
	if !ok {
		return larder.Key{}, fmt.Errorf("want a string or a number, got %s", describe(raw))
	}
	if t == larder.TypeInt64 {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return larder.Key{}, fmt.Errorf("%q is not an int64", clip(s))
		}
		return larder.Int64Key(n), nil
	}
	return larder.StringKey(s), nil
}

// minEventMillis is the first event time taken as a number of
// milliseconds since the Unix epoch: 1973-03-03T09:46:40Z. A number below
// it is most likely seconds (which stay below it until the year 5138), and
// read as milliseconds would be a time in 1970, older than every stored row.
const minEventMillis = 100_000_000_000

// timeOf reads an event time: RFC 3339 text, or a number of milliseconds
// since the Unix epoch, from minEventMillis on.
func timeOf(raw any) (time.Time, error) {
	s, ok := text(raw)
	if !ok {
		return time.Time{}, fmt.Errorf("want RFC 3339 text or milliseconds since the Unix epoch, got %s", describe(raw))
	}
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		at := time.UnixMilli(ms).UTC()
		switch {
		case ms >= minEventMillis:
			return at, nil
		case ms >= minEventMillis/1000:
			return time.Time{}, fmt.Errorf("%d looks like seconds since the Unix epoch (as milliseconds it is %s): a number is read as milliseconds, such as %d000",
				ms, at.Format(time.RFC3339Nano), ms)
		}
		return time.Time{}, fmt.Errorf("%d is before 1973 as milliseconds since the Unix epoch (%s): a number is read as milliseconds, such as 1777636800000 for 2026-05-01T12:00:00Z",
			ms, at.Format(time.RFC3339Nano))
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither RFC 3339 text (2026-05-01T12:00:00Z) nor milliseconds since the Unix epoch", clip(s))
	}
	return t.UTC(), nil
}

// valueOf converts one field's value to a value of type t.
func valueOf(raw any, t larder.Type) (larder.Value, error) {
	switch t {
	case larder.TypeStringList:
		items, err := listOf(raw, func(x any) (string, bool) { s, ok := x.(string); return s, ok })
		if err != nil {
			return larder.Null, err
		}
		return larder.StringListValue(items), nil
	case larder.TypeFloat32Vector:
		items, err := listOf(raw, func(x any) (float32, bool) {
			s, ok := text(x)
			if !ok {
				return 0, false
			}
			f, err := strconv.ParseFloat(s, 32)
			return float32(f), err == nil
		})
		if err != nil {
			return larder.Null, err
		}
		return larder.Float32VectorValue(items), nil
	case larder.TypeBool:
		switch x := raw.(type) {
		case bool:
			return larder.BoolValue(x), nil
		case string:
			b, err := strconv.ParseBool(x)
			if err != nil {
				return larder.Null, fmt.Errorf("%q is not a bool (true or false)", clip(x))
			}
			return larder.BoolValue(b), nil
		}
		return larder.Null, fmt.Errorf("want a bool, got %s", describe(raw))
	}
	s, ok := text(raw)
	if !ok {
		return larder.Null, fmt.Errorf("want %s %s value, got %s", article(t), t, describe(raw))
	}
	switch t {
	case larder.TypeInt64:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return larder.Null, fmt.Errorf("%q is not an int64", clip(s))
		}
		return larder.Int64Value(n), nil
	case larder.TypeFloat64, larder.TypeFloat32:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return larder.Null, fmt.Errorf("%q is not a number", clip(s))
		}
		if t == larder.TypeFloat32 {
			if math.Abs(f) > math.MaxFloat32 && !math.IsInf(f, 0) {
				return larder.Null, fmt.Errorf("%s is out of the range of a float32", s)
			}
			return larder.Float32Value(float32(f)), nil
		}
		return larder.Float64Value(f), nil
	case larder.TypeString:
		return larder.StringValue(s), nil
	case larder.TypeBytes:
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return larder.Null, fmt.Errorf("bytes are written in standard base64: %v", err)
		}
		return larder.BytesValue(b), nil
	}
	return larder.Null, fmt.Errorf("type %s cannot be streamed", t)
}

// listOf reads a JSON array, or a JSON array written as text (a Redis
// stream field), with item converting each item.
func listOf[T any](raw any, item func(any) (T, bool)) ([]T, error) {
	arr, ok := raw.([]any)
	if s, isText := raw.(string); isText {
		d := json.NewDecoder(strings.NewReader(s))
		d.UseNumber()
		if err := d.Decode(&arr); err != nil {
			return nil, fmt.Errorf("want a JSON array, got %q", clip(s))
		}
		ok = true
	}
	if !ok {
		return nil, fmt.Errorf("want an array, got %s", describe(raw))
	}
	out := make([]T, len(arr))
	for i, x := range arr {
		v, ok := item(x)
		if !ok {
			return nil, fmt.Errorf("item %d: unexpected %s", i, describe(x))
		}
		out[i] = v
	}
	return out, nil
}

func describe(raw any) string {
	switch raw.(type) {
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a bool"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	case nil:
		return "null"
	}
	return fmt.Sprintf("a %T", raw)
}

// clip shortens what an error echoes.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// article returns "an" before type t's name when it starts with a vowel,
// else "a".
func article(t larder.Type) string {
	if s := t.String(); s != "" && strings.ContainsRune("aeiou", rune(s[0])) {
		return "an"
	}
	return "a"
}
