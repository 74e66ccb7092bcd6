package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/larder-dev/larder"
)

func (a *app) getCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "get VIEW KEY...",
		Short: "Print the decoded values of entities in a view's live generation",
		Example: `  larder get user_profile 42 43
  larder get --json item_profile 7`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) < 2 {
				return errors.New("get needs a view and at least one entity key, such as `larder get user_profile 42` (`larder views` lists the views)")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			p, err := a.loadProject()
			if err != nil {
				return err
			}
			v := p.View(args[0])
			if v == nil {
				return fmt.Errorf("unknown view %q (see `larder views`)", args[0])
			}
			keys := make([]larder.Key, len(args)-1)
			for i, s := range args[1:] {
				if keys[i], err = larder.ParseKey(v.EntityDef().KeyType, s); err != nil {
					return fmt.Errorf("view %s is keyed by %s: %w", v.Name, v.EntityDef().Key, err)
				}
			}
			if err := needsRedis(p, "larder get"); err != nil {
				return err
			}
			b, err := a.openStore(ctx, p)
			if err != nil {
				return err
			}
			defer b.Close()
			l := &larder.Lookup{View: v, Keys: keys}
			if err := b.store.Read(ctx, []*larder.Lookup{l}); err != nil {
				if errors.Is(err, larder.ErrNoGeneration) {
					return fmt.Errorf("view %s has no published generation in Redis %s: run `larder materialize %s` first",
						v.Name, strings.Join(p.Redis.Addrs, ","), v.Name)
				}
				// The store's errors name the view already.
				return err
			}
			if asJSON {
				return a.printRowsJSON(l)
			}
			return a.printRows(l)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON, one object per key")
	return cmd
}

func (a *app) printRows(l *larder.Lookup) error {
	v := l.View
	now := a.now()
	for i, k := range l.Keys {
		if i > 0 {
			fmt.Fprintln(a.stdout)
		}
		st := v.Status(l.Found[i], l.Rows[i].EventTime, now)
		fmt.Fprintf(a.stdout, "%s %s=%s  generation %d  %s", v.Name, v.EntityDef().Key, k, l.Generation, st)
		if !l.Found[i] {
			fmt.Fprintln(a.stdout)
			continue
		}
		fmt.Fprintf(a.stdout, "  event_time %s\n", l.Rows[i].EventTime.UTC().Format(time.RFC3339Nano))
		tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
		for fi, f := range v.Features {
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", f.Name, f.Type, tableValue(l.Rows[i].Values[fi]))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

// tableListMax is how many elements of a list or vector the table shows.
const tableListMax = 20

// tableValue formats v for the table: as Value.String does, except that a
// list or vector longer than tableListMax shows its first elements, then how
// many there are in all, so that a candidate list of hundreds stays one
// readable line. --json prints every element.
func tableValue(v larder.Value) string {
	var n int
	switch v.Type() {
	case larder.TypeFloat32Vector:
		n = len(v.Vector())
		if n > tableListMax {
			v = larder.Float32VectorValue(v.Vector()[:tableListMax])
		}
	case larder.TypeInt64List:
		n = len(v.Int64List())
		if n > tableListMax {
			v = larder.Int64ListValue(v.Int64List()[:tableListMax])
		}
	case larder.TypeStringList:
		n = len(v.StringList())
		if n > tableListMax {
			v = larder.StringListValue(v.StringList()[:tableListMax])
		}
	default:
		return v.String()
	}
	s := v.String()
	if n > tableListMax {
		s = fmt.Sprintf("%s ...] (%d in all; --json prints every one)", s[:len(s)-1], n)
	}
	return s
}

// jsonRow is the --json form of one entity.
type jsonRow struct {
	View       string         `json:"view"`
	Key        any            `json:"key"`
	Generation int64          `json:"generation"`
	Status     string         `json:"status"`
	EventTime  *time.Time     `json:"event_time,omitempty"`
	Values     map[string]any `json:"values,omitempty"`
}

func (a *app) printRowsJSON(l *larder.Lookup) error {
	enc := json.NewEncoder(a.stdout)
	now := a.now()
	for i, k := range l.Keys {
		r := jsonRow{View: l.View.Name, Generation: l.Generation, Status: l.View.Status(l.Found[i], l.Rows[i].EventTime, now).String()}
		if k.Type() == larder.TypeInt64 {
			r.Key = k.Int64()
		} else {
			r.Key = k.Str()
		}
		if l.Found[i] {
			t := l.Rows[i].EventTime.UTC()
			r.EventTime = &t
			r.Values = make(map[string]any, len(l.View.Features))
			for fi, f := range l.View.Features {
				r.Values[f.Name] = jsonValue(l.Rows[i].Values[fi])
			}
		}
		if err := enc.Encode(r); err != nil {
			return err
		}
	}
	return nil
}

// jsonValue converts a value for encoding/json; non-finite floats, which JSON
// cannot hold, become strings.
func jsonValue(v larder.Value) any {
	finite := func(f float64, bits int) any {
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Sprint(f)
		}
		// The shortest text that reads back as the same float32 or float64.
		return json.Number(strconv.FormatFloat(f, 'g', -1, bits))
	}
	switch v.Type() {
	case larder.TypeInt64:
		return v.Int64()
	case larder.TypeFloat64:
		return finite(v.Float64(), 64)
	case larder.TypeFloat32:
		return finite(float64(v.Float32()), 32)
	case larder.TypeBool:
		return v.Bool()
	case larder.TypeString:
		return v.Str()
	case larder.TypeBytes:
		return v.Bytes()
	case larder.TypeFloat32Vector:
		vec := make([]any, len(v.Vector()))
		for i, f := range v.Vector() {
			vec[i] = finite(float64(f), 32)
		}
		return vec
	case larder.TypeInt64List:
		// A JSON array of numbers; never null, even when empty.
		return append(make([]int64, 0, len(v.Int64List())), v.Int64List()...)
	case larder.TypeStringList:
		return append(make([]string, 0, len(v.StringList())), v.StringList()...)
	}
	return nil
}
