package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/larder-dev/larder"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
)

// pushOptions are the flags of larder push.
type pushOptions struct {
	addr    string
	key     string
	at      string
	batch   int
	timeout time.Duration
	client  clientOptions
}

// maxPushLine bounds one line of push's standard input: a row with a large
// vector still fits.
const maxPushLine = 16 << 20

func (a *app) pushCommand() *cobra.Command {
	var o pushOptions
	cmd := &cobra.Command{
		Use:   "push VIEW [--key KEY [--time RFC3339] FEATURE=VALUE...]",
		Short: "Push rows into a latest view's live generation through a running server",
		Long: `push calls Push on a running larder serve, as a product service would, to
write fresh values into the live generation of a latest view between runs. A
row replaces the entity's stored row only when it is not older
(write-if-newer, by event time), and each row's outcome is printed: written,
older (the stored row is newer, the row was left out) or invalid, with the
reason. push exits 1 when any row is invalid.

With --key, push sends one row: the features given as FEATURE=VALUE, each
read as the type the view declares for it, the others null. Numbers and
bools are written as they are (NaN, +Inf and -Inf for floats), a string as
it is, bytes in base64, and a float32_vector, int64_list or string_list as a
JSON array, such as 'embedding=[0.5,-1]'. --time is the row's event time
(default: now).

Without --key, push reads rows from standard input, one JSON object per
line, and sends them in batches of --batch:

  {"key": 42, "event_time": "2026-12-01T12:00:00Z", "values": {"age": 35, "country": "fr"}}

The key is a number or a string, as the view's entity is keyed; event_time
is RFC 3339 and required; values are JSON of the features' types (bytes in
base64, NaN and infinities as the strings "NaN", "+Inf" and "-Inf"), null or
left out for null. The lines ` + "`larder get --json`" + ` prints are read too. A
line that does not parse is invalid, and the others are still sent.

push calls --addr, or server.listen of the project file, with the TLS and
token flags of larder rank. A server that checks its callers (server.auth)
needs a token of the write role.`,
		Example: `  larder push user_profile --key 42 age=35 country=fr
  larder push user_profile --key 42 --time 2026-12-01T12:00:00Z 'embedding=[0.5,-1,3]'
  larder push user_profile < rows.jsonl`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) == 0 {
				return errors.New("push needs a view, such as `larder push user_profile --key 42 age=35` (`larder views` lists the views)")
			}
			if o.key == "" && len(args) > 1 {
				return fmt.Errorf("%s: FEATURE=VALUE arguments need --key; without it push reads JSON lines from standard input", args[1])
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.runPush(cmd.Context(), args[0], args[1:], o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.addr, "addr", "", "the server's gRPC address, host:port (default: server.listen of the project file)")
	f.StringVar(&o.key, "key", "", "the entity key of the one row to push (default: read JSON lines from standard input)")
	f.StringVar(&o.at, "time", "", "the event time of the row of --key, RFC 3339 (default: now)")
	f.IntVar(&o.batch, "batch", 500, "rows per Push call when reading standard input (at most the server's server.max_entities)")
	f.DurationVar(&o.timeout, "timeout", 10*time.Second, "how long to wait for each answer")
	o.client.addFlags(cmd)
	return cmd
}

// pushLine is a row to push, and where it came from for the output.
type pushLine struct {
	where string // "line 3", or "" for the row of --key
	key   string
	row   *larderv1.PushRow
	// invalid is why the row was not sent, when it could not be read.
	invalid string
}

func (a *app) runPush(ctx context.Context, view string, assigns []string, o pushOptions) error {
	p, err := a.loadConfig()
	if err != nil {
		return err
	}
	v := p.View(view)
	switch {
	case v == nil:
		return fmt.Errorf("unknown view %q (latest views of the project file: %s)", view, strings.Join(p.ViewNames(larder.KindLatest), ", "))
	case v.Kind != larder.KindLatest:
		return fmt.Errorf("view %s is not a latest view (its kind is %s): push writes into latest views only (latest views of the project file: %s)",
			view, v.Kind, strings.Join(p.ViewNames(larder.KindLatest), ", "))
	case o.batch < 1:
		return fmt.Errorf("--batch %d: want at least 1", o.batch)
	}
	if o.key == "" && o.at != "" {
		return errors.New("--time goes with --key: the rows of standard input carry their own event_time")
	}

	addr, from := o.addr, (*larder.Project)(nil)
	if addr == "" {
		addr, from = p.Server.Listen, p
	}
	var one *pushLine
	if o.key != "" {
		// The row is checked before anything is dialed.
		if one, err = a.argsRow(v, o, assigns); err != nil {
			return err
		}
	}
	conn, err := o.client.dial(addr, from)
	if err != nil {
		return fmt.Errorf("push: server %s: %w", addr, err)
	}
	defer conn.Close()
	client := larderv1.NewIngestServiceClient(conn)
	var total pushTotals
	send := func(lines []pushLine) error {
		req := &larderv1.PushRequest{View: v.Name}
		for _, l := range lines {
			if l.invalid == "" {
				req.Rows = append(req.Rows, l.row)
			}
		}
		var outcomes []*larderv1.PushOutcome
		if len(req.Rows) > 0 {
			call, cancel := context.WithTimeout(ctx, o.timeout)
			resp, err := client.Push(call, req)
			cancel()
			if err != nil {
				st := status.Convert(err)
				return fmt.Errorf("push %s at %s: %s: %s%s", v.Name, addr, st.Code(), st.Message(), o.client.hint(st, from))
			}
			if outcomes = resp.GetOutcomes(); len(outcomes) != len(req.Rows) {
				return fmt.Errorf("push %s at %s: %d outcomes for %d rows", v.Name, addr, len(outcomes), len(req.Rows))
			}
		}
		return a.printPushed(v, lines, outcomes, &total)
	}

	if one != nil {
		if err := send([]pushLine{*one}); err != nil {
			return err
		}
	} else if err := a.readPushLines(v, o.batch, send); err != nil {
		return err
	}
	if one == nil {
		fmt.Fprintf(a.stdout, "%s: %d rows: %d written, %d older, %d invalid\n", v.Name, total.rows(), total.written, total.older, total.invalid)
	}
	if total.invalid > 0 {
		return exitError{code: 1}
	}
	return nil
}

// pushTotals counts the outcomes printed.
type pushTotals struct{ written, older, invalid int }

func (t pushTotals) rows() int { return t.written + t.older + t.invalid }

// printPushed prints the outcome of each line: outcomes holds those of the
// lines that were sent, in order.
func (a *app) printPushed(v *larder.View, lines []pushLine, outcomes []*larderv1.PushOutcome, total *pushTotals) error {
	keyName := v.EntityDef().Key
	j := 0
	for _, l := range lines {
		result, reason := "invalid", l.invalid
		if reason == "" {
			o := outcomes[j]
			j++
			switch o.GetResult() {
			case larderv1.PushResult_PUSH_RESULT_WRITTEN:
				result = "written"
			case larderv1.PushResult_PUSH_RESULT_OLDER:
				result = "older"
			default:
				reason = trimRowField(o.GetReason())
			}
		}
		switch result {
		case "written":
			total.written++
		case "older":
			total.older++
		default:
			total.invalid++
		}
		var b strings.Builder
		if l.where != "" {
			b.WriteString(l.where + ": ")
		}
		b.WriteString(v.Name)
		if l.key != "" {
			b.WriteString(" " + keyName + "=" + l.key)
		}
		b.WriteString(" " + result)
		if reason != "" {
			b.WriteString(": " + reason)
		}
		if _, err := fmt.Fprintln(a.stdout, b.String()); err != nil {
			return err
		}
	}
	return nil
}

// trimRowField drops the "rows[3]." that starts a reason of the server:
// the row is named by its line already, not by its place in one call.
func trimRowField(reason string) string {
	if rest, ok := strings.CutPrefix(reason, "rows["); ok {
		if i := strings.Index(rest, "]."); i >= 0 && strings.Trim(rest[:i], "0123456789") == "" {
			return rest[i+2:]
		}
	}
	return reason
}

// argsRow builds the row of --key, --time and FEATURE=VALUE arguments. A
// mistake is an error: nothing is sent.
func (a *app) argsRow(v *larder.View, o pushOptions, assigns []string) (*pushLine, error) {
	key, err := cliKey(v.EntityDef(), o.key)
	if err != nil {
		return nil, fmt.Errorf("--key: %w", err)
	}
	at := a.now()
	if o.at != "" {
		if at, err = time.Parse(time.RFC3339Nano, o.at); err != nil {
			return nil, fmt.Errorf("--time %q: want an RFC 3339 time, such as 2026-12-01T12:00:00Z", o.at)
		}
	}
	row := &larderv1.PushRow{Key: key, EventTime: timestamppb.New(at), Values: make(map[string]*larderv1.Value, len(assigns))}
	for _, s := range assigns {
		name, text, ok := strings.Cut(s, "=")
		if !ok {
			return nil, fmt.Errorf("%q: write FEATURE=VALUE", s)
		}
		fi := v.FeatureIndex(name)
		if fi < 0 {
			return nil, fmt.Errorf("%s: view %s has no such feature (features: %s)", name, v.Name, featureList(v))
		}
		if _, dup := row.Values[name]; dup {
			return nil, fmt.Errorf("%s: given twice", name)
		}
		t := v.Features[fi].Type
		val, err := argValue(t, text)
		if err != nil {
			return nil, fmt.Errorf("%s=%s: %s is %s: %w", name, text, name, t, err)
		}
		row.Values[name] = val
	}
	return &pushLine{key: o.key, row: row}, nil
}

func featureList(v *larder.View) string {
	var b strings.Builder
	for i, f := range v.Features {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(f.Name + " " + f.Type.String())
	}
	return b.String()
}

// argValue reads the text of a FEATURE=VALUE argument as a value of type t.
func argValue(t larder.Type, text string) (*larderv1.Value, error) {
	switch t {
	case larder.TypeString:
		return &larderv1.Value{Kind: &larderv1.Value_StringValue{StringValue: text}}, nil
	case larder.TypeBytes:
		b, err := base64.StdEncoding.DecodeString(text)
		if err != nil {
			return nil, errors.New("not base64")
		}
		return &larderv1.Value{Kind: &larderv1.Value_BytesValue{BytesValue: b}}, nil
	case larder.TypeFloat32Vector, larder.TypeInt64List, larder.TypeStringList:
		return jsonToValue(t, json.RawMessage(text))
	case larder.TypeFloat64, larder.TypeFloat32:
		// As JSON, and the texts of NaN and infinities.
		if f, ok := nonFiniteText(text); ok {
			return floatValue(t, f), nil
		}
	}
	return jsonToValue(t, json.RawMessage(text))
}

// nonFiniteText reads "NaN", "+Inf", "-Inf" (and "Inf"), the texts that
// `larder get --json` prints for the floats JSON cannot hold.
func nonFiniteText(s string) (float64, bool) {
	switch s {
	case "NaN":
		return math.NaN(), true
	case "+Inf", "Inf":
		return math.Inf(1), true
	case "-Inf":
		return math.Inf(-1), true
	}
	return 0, false
}

func floatValue(t larder.Type, f float64) *larderv1.Value {
	if t == larder.TypeFloat32 {
		return &larderv1.Value{Kind: &larderv1.Value_Float32Value{Float32Value: float32(f)}}
	}
	return &larderv1.Value{Kind: &larderv1.Value_Float64Value{Float64Value: f}}
}

// jsonToValue reads raw, JSON, as a value of type t; JSON null is a Value
// with no kind (null).
func jsonToValue(t larder.Type, raw json.RawMessage) (*larderv1.Value, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil, errors.New("no value")
	}
	if string(raw) == "null" {
		return &larderv1.Value{}, nil
	}
	dec := func(dst any) error {
		d := json.NewDecoder(bytes.NewReader(raw))
		d.UseNumber()
		if err := d.Decode(dst); err != nil {
			return err
		}
		if d.More() {
			return errors.New("more than one value")
		}
		return nil
	}
	switch t {
	case larder.TypeInt64:
		var n json.Number
		if err := dec(&n); err != nil {
			return nil, errors.New("not an integer")
		}
		i, err := strconv.ParseInt(n.String(), 10, 64)
		if err != nil {
			return nil, errors.New("not an integer")
		}
		return &larderv1.Value{Kind: &larderv1.Value_Int64Value{Int64Value: i}}, nil
	case larder.TypeFloat64, larder.TypeFloat32:
		f, err := jsonFloat(raw, t)
		if err != nil {
			return nil, err
		}
		return floatValue(t, f), nil
	case larder.TypeBool:
		var b bool
		if err := dec(&b); err != nil {
			return nil, errors.New("not true or false")
		}
		return &larderv1.Value{Kind: &larderv1.Value_BoolValue{BoolValue: b}}, nil
	case larder.TypeString:
		var s string
		if err := dec(&s); err != nil {
			return nil, errors.New("not a JSON string")
		}
		return &larderv1.Value{Kind: &larderv1.Value_StringValue{StringValue: s}}, nil
	case larder.TypeBytes:
		var b []byte
		if err := dec(&b); err != nil {
			return nil, errors.New("not a base64 JSON string")
		}
		return &larderv1.Value{Kind: &larderv1.Value_BytesValue{BytesValue: b}}, nil
	case larder.TypeFloat32Vector:
		var elems []json.RawMessage
		if err := dec(&elems); err != nil || elems == nil {
			return nil, errors.New("not a JSON array of numbers")
		}
		vec := make([]float32, len(elems))
		for i, e := range elems {
			f, err := jsonFloat(e, larder.TypeFloat32)
			if err != nil {
				return nil, fmt.Errorf("element %d: %w", i, err)
			}
			vec[i] = float32(f)
		}
		return &larderv1.Value{Kind: &larderv1.Value_Float32VectorValue{Float32VectorValue: &larderv1.FloatVector{Values: vec}}}, nil
	case larder.TypeInt64List:
		var list []int64
		if err := dec(&list); err != nil || list == nil {
			return nil, errors.New("not a JSON array of integers")
		}
		return &larderv1.Value{Kind: &larderv1.Value_Int64ListValue{Int64ListValue: &larderv1.Int64List{Values: list}}}, nil
	case larder.TypeStringList:
		var list []string
		if err := dec(&list); err != nil || list == nil {
			return nil, errors.New("not a JSON array of strings")
		}
		return &larderv1.Value{Kind: &larderv1.Value_StringListValue{StringListValue: &larderv1.StringList{Values: list}}}, nil
	}
	return nil, fmt.Errorf("push does not write %s values", t)
}

// jsonFloat reads a JSON number, or one of the strings of nonFiniteText,
// as a float of type t.
func jsonFloat(raw json.RawMessage, t larder.Type) (float64, error) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		if f, ok := nonFiniteText(s); ok {
			return f, nil
		}
		return 0, errors.New(`not a number (nor "NaN", "+Inf" or "-Inf")`)
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err != nil {
		return 0, errors.New("not a number")
	}
	bits := 64
	if t == larder.TypeFloat32 {
		bits = 32
	}
	f, err := strconv.ParseFloat(n.String(), bits)
	if err != nil {
		return 0, fmt.Errorf("%s is beyond the range of %s", n, t)
	}
	return f, nil
}

// jsonLine is a line of push's standard input. View, Generation and
// Status are what `larder get --json` prints besides, so that its lines
// can be pushed again: a view, when given, must be the one pushed into.
type jsonLine struct {
	Key       json.RawMessage            `json:"key"`
	EventTime *time.Time                 `json:"event_time"`
	Values    map[string]json.RawMessage `json:"values"`

	View       string          `json:"view"`
	Generation json.RawMessage `json:"generation"`
	Status     json.RawMessage `json:"status"`
}

// readPushLines reads the JSON lines of standard input and hands them to
// send in batches of batch lines; a line that does not parse goes with its
// batch as invalid. Blank lines are skipped.
func (a *app) readPushLines(v *larder.View, batch int, send func([]pushLine) error) error {
	sc := bufio.NewScanner(a.stdin)
	sc.Buffer(make([]byte, 0, 64<<10), maxPushLine)
	lines := make([]pushLine, 0, batch)
	sent := 0
	n := 0
	for sc.Scan() {
		n++
		text := bytes.TrimSpace(sc.Bytes())
		if len(text) == 0 {
			continue
		}
		lines = append(lines, readJSONRow(v, text, "line "+strconv.Itoa(n)))
		if len(lines) == batch {
			if err := send(lines); err != nil {
				return err
			}
			sent += len(lines)
			lines = lines[:0]
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return fmt.Errorf("standard input: line %d is longer than %d bytes", n+1, maxPushLine)
		}
		return fmt.Errorf("standard input: %w", err)
	}
	if len(lines) > 0 {
		return send(lines)
	}
	if sent == 0 {
		return errors.New("no rows on standard input: give JSON lines such as {\"key\": 42, \"event_time\": \"2026-12-01T12:00:00Z\", \"values\": {...}}, or one row with --key")
	}
	return nil
}

// readJSONRow reads one JSON line as a row of view v.
func readJSONRow(v *larder.View, text []byte, where string) pushLine {
	l := pushLine{where: where}
	var in jsonLine
	d := json.NewDecoder(bytes.NewReader(text))
	d.DisallowUnknownFields()
	if err := d.Decode(&in); err != nil {
		l.invalid = "not a JSON object of key, event_time and values: " + err.Error()
		return l
	}
	if in.View != "" && in.View != v.Name {
		l.invalid = fmt.Sprintf("view: the line is a row of view %q, not of %s", in.View, v.Name)
		return l
	}
	e := v.EntityDef()
	var keyText string
	switch {
	case len(in.Key) == 0 || string(in.Key) == "null":
		l.invalid = "key: required"
		return l
	case e.KeyType == larder.TypeString:
		if err := json.Unmarshal(in.Key, &keyText); err != nil {
			l.invalid = fmt.Sprintf("key: entity %s is keyed by string %s: want a JSON string", e.Name, e.Key)
			return l
		}
	default:
		var n json.Number
		if err := json.Unmarshal(in.Key, &n); err != nil {
			l.invalid = fmt.Sprintf("key: entity %s is keyed by int64 %s: want a JSON integer", e.Name, e.Key)
			return l
		}
		keyText = n.String()
	}
	l.key = keyText
	key, err := cliKey(e, keyText)
	if err != nil {
		l.invalid = "key: " + err.Error()
		return l
	}
	if in.EventTime == nil {
		l.invalid = "event_time: required, an RFC 3339 time such as 2026-12-01T12:00:00Z"
		return l
	}
	row := &larderv1.PushRow{Key: key, EventTime: timestamppb.New(*in.EventTime), Values: make(map[string]*larderv1.Value, len(in.Values))}
	// In name order, so that a line with two mistakes is always answered
	// with the same one.
	for _, name := range slices.Sorted(maps.Keys(in.Values)) {
		raw := in.Values[name]
		fi := v.FeatureIndex(name)
		if fi < 0 {
			l.invalid = fmt.Sprintf("values: view %s has no feature %q (features: %s)", v.Name, name, featureList(v))
			return l
		}
		t := v.Features[fi].Type
		val, err := jsonToValue(t, raw)
		if err != nil {
			l.invalid = fmt.Sprintf("values.%s: %s is %s: %v", name, name, t, err)
			return l
		}
		row.Values[name] = val
	}
	l.row = row
	return l
}
