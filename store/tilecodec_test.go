package store

import (
	"encoding/hex"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/larder-dev/larder"
)

// TestTileCodec writes random batch and stream tiles and reads them back
// bit for bit: floats that are short decimals and those that are not,
// negative zero, integers of either sign, strings, counts of one value
// and of several, and ids of each form.
func TestTileCodec(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const tau = int64(60e9)
	specs := []tileSpec{
		{kind: 'f', typ: larder.TypeFloat64, sum: true, min: true, max: true, last: true},
		{kind: 'i', typ: larder.TypeInt64, sum: true, last: true},
		{kind: 'i', typ: larder.TypeInt64, rows: true},
		{kind: 's', typ: larder.TypeString, last: true},
		{kind: 'f', typ: larder.TypeFloat64, min: true},
	}
	floats := []float64{0, math.Copysign(0, -1), 6.13, -6.13, 102.20999999999999, 1e300, -1e-300, 0.1 + 0.2, 12345.6789, 1 << 52, math.MaxFloat64, math.SmallestNonzeroFloat64}
	value := func(sp tileSpec) uint64 {
		switch {
		case sp.kind == 'f' && rng.IntN(2) == 0:
			return math.Float64bits(floats[rng.IntN(len(floats))])
		case sp.kind == 'f':
			return math.Float64bits(rng.NormFloat64() * math.Pow(10, float64(rng.IntN(20)-10)))
		case sp.kind == 'i':
			return uint64(rng.Int64N(1<<41) - 1<<40)
		}
		return 0
	}
	partial := func(sp tileSpec, ref int64) larder.Partial {
		var p larder.Partial
		for range rng.IntN(4) {
			t := ref - rng.Int64N(tau)
			if rng.IntN(2) == 0 {
				t -= t % 1e6
			}
			if rng.IntN(3) == 0 {
				t = ref
			}
			var s string
			if sp.kind == 's' {
				s = strconv.Itoa(rng.IntN(1000))
			}
			p.Add(sp.kind, t, value(sp), s)
		}
		return p
	}
	// same compares what the encodings keep of a partial.
	same := func(sp tileSpec, got, want *larder.Partial) bool {
		if got.Count != want.Count {
			return false
		}
		if want.Count == 0 {
			return true
		}
		return (!sp.sum || got.Sum == want.Sum) && (!sp.min || got.Min == want.Min) && (!sp.max || got.Max == want.Max) &&
			(!sp.last || (got.LastAt == want.LastAt && (sp.kind == 's' || got.Last == want.Last) && got.LastStr == want.LastStr))
	}
	for range 300 {
		c := int64(29_627_000) + rng.Int64N(1000)
		var et larder.EntityTiles
		for _, sp := range specs {
			var at larder.AggTiles
			end := c - 200
			for range rng.IntN(5) {
				end += 1 + rng.Int64N(30)
				at.Tiles = append(at.Tiles, larder.Tile{End: end, Partial: partial(sp, end*tau)})
			}
			for range 3 {
				at.Rest = append(at.Rest, partial(sp, c*tau))
			}
			et.Aggs = append(et.Aggs, at)
		}
		var got larder.EntityTiles
		if err := decodeEntityTiles(string(appendEntityTiles(nil, specs, c, tau, 7, &et)), specs, c, tau, 7, &got); err != nil {
			t.Fatal(err)
		}
		for a, sp := range specs {
			w, g := &et.Aggs[a], &got.Aggs[a]
			if len(g.Tiles) != len(w.Tiles) || len(g.Rest) != len(w.Rest) {
				t.Fatalf("aggregation %d: %d tiles %d rests, want %d %d", a, len(g.Tiles), len(g.Rest), len(w.Tiles), len(w.Rest))
			}
			for i := range w.Tiles {
				if g.Tiles[i].End != w.Tiles[i].End || !same(sp, &g.Tiles[i].Partial, &w.Tiles[i].Partial) {
					t.Fatalf("aggregation %d tile %d: %+v, want %+v", a, i, g.Tiles[i], w.Tiles[i])
				}
			}
			for i := range w.Rest {
				if !same(sp, &g.Rest[i], &w.Rest[i]) {
					t.Fatalf("aggregation %d rest %d: %+v, want %+v", a, i, g.Rest[i], w.Rest[i])
				}
			}
		}

		var tiles []streamTile
		end := c
		for range rng.IntN(6) {
			end += 1 + rng.Int64N(5)
			st := streamTile{end: end, newest: end*tau - rng.Int64N(tau)}
			for range 1 + rng.IntN(3) {
				var id string
				switch rng.IntN(3) {
				case 0:
					id = strconv.FormatInt(rng.Int64N(1<<45), 10) + "-" + strconv.Itoa(rng.IntN(3))
				case 1:
					id = strconv.Itoa(rng.IntN(12)) + "/" + strconv.FormatInt(rng.Int64N(1<<30), 10)
				default:
					id = "e" + strconv.Itoa(rng.IntN(1000))
				}
				st.ids = appendEventID(st.ids, id)
				st.nids++
			}
			for _, sp := range specs {
				st.parts = append(st.parts, partial(sp, st.newest))
			}
			tiles = append(tiles, st)
		}
		enc := string(appendStreamTiles(nil, specs, tau, 7, tiles))
		gotTiles, err := decodeStreamTiles(enc, 7, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := range gotTiles {
			if err := gotTiles[i].decode(specs, tau, true); err != nil {
				t.Fatal(err)
			}
		}
		// Tiles written back as read, or from what they decode to, encode
		// alike.
		if again := string(appendStreamTiles(nil, specs, tau, 7, gotTiles)); again != enc {
			t.Fatalf("stream tiles written back as read: %x, want %x", again, enc)
		}
		for i := range gotTiles {
			gotTiles[i].raw = nil
		}
		if again := string(appendStreamTiles(nil, specs, tau, 7, gotTiles)); again != enc {
			t.Fatalf("stream tiles written back from their values: %x, want %x", again, enc)
		}
		if len(gotTiles) != len(tiles) {
			t.Fatalf("%d stream tiles, want %d", len(gotTiles), len(tiles))
		}
		for i := range tiles {
			g, w := &gotTiles[i], &tiles[i]
			if g.end != w.end || g.newest != w.newest || g.nids != w.nids || string(g.ids) != string(w.ids) {
				t.Fatalf("stream tile %d: %d %d %d ids, want %d %d %d", i, g.end, g.newest, g.nids, w.end, w.newest, w.nids)
			}
			for a, sp := range specs {
				if !same(sp, &g.parts[a], &w.parts[a]) {
					t.Fatalf("stream tile %d aggregation %d: %+v, want %+v", i, a, g.parts[a], w.parts[a])
				}
			}
		}
	}
}

// TestEventIDs checks that two ids encode alike only when they are equal,
// and that the short forms are taken by canonical numbers only.
func TestEventIDs(t *testing.T) {
	ids := []string{"1-0", "01-0", "1-00", "1-0-0", "0/17", "0/017", "00/17", "-1-0", "1-", "-", "/", "", "1/2/3", "t/0/17", "18446744073709551615-1", "18446744073709551616-1", "é"}
	seen := map[string]string{}
	for _, id := range ids {
		enc := string(appendEventID(nil, id))
		if prev, ok := seen[enc]; ok {
			t.Errorf("%q and %q encode alike", id, prev)
		}
		seen[enc] = id
		st := streamTile{ids: []byte(enc), nids: 1}
		if !st.hasID([]byte(enc)) {
			t.Errorf("%q: not found in its own tile", id)
		}
	}
	for id, n := range map[string]int{"1777635145000-0": 8, "2/123456": 5, "m12": 5} {
		if got := len(appendEventID(nil, id)); got != n {
			t.Errorf("%q: %d bytes, want %d", id, got, n)
		}
	}
}

// TestTileGolden holds the tile encodings to literal bytes: a change
// here is a change of the stored format (see docs/operations.md).
func TestTileGolden(t *testing.T) {
	const tau = int64(60e9)
	c := int64(29_627_280) // 2026-05-01 12:00 UTC
	specs := []tileSpec{
		{kind: 'f', typ: larder.TypeFloat64, sum: true, min: true, max: true, last: true},
		{kind: 's', typ: larder.TypeString, last: true},
	}
	var p, q larder.Partial
	p.Add('f', (c-2)*tau-1e9, math.Float64bits(6.13), "")
	p.Add('f', (c-2)*tau-2e9, math.Float64bits(0.1), "")
	q.Add('s', (c-2)*tau-1, 0, "/p")
	et := larder.EntityTiles{Aggs: []larder.AggTiles{
		{Tiles: []larder.Tile{{End: c - 2, Partial: p}}, Rest: []larder.Partial{{}}},
		{Tiles: []larder.Tile{{End: c - 2, Partial: q}}},
	}}
	// The batch: format 2, the definition's tag (0x01020304, little
	// endian); one tile 2 before the cutoff of 2 values: sum
	// 6.2299999999999995 in full, min 0.1 as 1·8 + 1, max and last 6.13
	// as 613·8 + 2, last 1,000 ms before the tile's end; an empty rest;
	// the string's tile, its last 1 ns before the end, "/p".
	const batchBody = "0103" + "02a4" + "0eeb51b81e85eb1840" + "12" + "d44c" + "a01f" + "0100" +
		"0103" + "01" + "06" + "022f70" + "00"
	const wantBatch = "02" + "04030201" + batchBody
	if got := fmt.Sprintf("%x", appendEntityTiles(nil, specs, c, tau, 0x01020304, &et)); got != wantBatch {
		t.Errorf("batch tiles\n got %s\nwant %s", got, wantBatch)
	}
	// Batch tiles of format 1, written before the tag, are read as of the
	// reader's definition; tiles of another definition are refused as
	// such.
	for _, tc := range []struct {
		enc  string
		tag  uint32
		want error
	}{
		{"01" + batchBody, 9, nil},
		{wantBatch, 0x01020304, nil},
		{wantBatch, 9, errOtherTiles},
	} {
		b, err := hex.DecodeString(tc.enc)
		if err != nil {
			t.Fatal(err)
		}
		var got larder.EntityTiles
		if err := decodeEntityTiles(string(b), specs, c, tau, tc.tag, &got); err != tc.want {
			t.Errorf("decode batch %s… as of tag %#x: %v, want %v", tc.enc[:10], tc.tag, err, tc.want)
		}
	}
	st := []streamTile{{end: c + 1, newest: (c+1)*tau - 500e6, nids: 2, ids: appendEventID(appendEventID(nil, "1777636800000-0"), "3/42"),
		parts: []larder.Partial{p, q}}}
	// The stream: format 2, the definition's tag (0x01020304, little
	// endian), one tile, its end, the length of the rest (41 bytes), its
	// newest event 500 ms before the end, two ids (a Redis entry id, a
	// Kafka partition/offset), then the partials against the newest event.
	const body = "01" + "a2cea01c" + "29" + "d00f" + "02" + "0180eca39bde3300" + "02032a" +
		"02a40eeb51b81e85eb184012d44c" + "d0882c" + "01" + "86988ae1f214" + "022f70"
	const wantStream = "02" + "04030201" + body
	if got := fmt.Sprintf("%x", appendStreamTiles(nil, specs, tau, 0x01020304, st)); got != wantStream {
		t.Errorf("stream tiles\n got %s\nwant %s", got, wantStream)
	}
	// Tiles of format 1, written before the tag, are read as of the
	// reader's definition; tiles of another definition are none of its.
	for _, tc := range []struct {
		enc  string
		tag  uint32
		want int
	}{
		{"01" + body, 9, 1},
		{wantStream, 0x01020304, 1},
		{wantStream, 9, 0},
	} {
		b, err := hex.DecodeString(tc.enc)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeStreamTiles(string(b), tc.tag, nil)
		if err != nil || len(got) != tc.want {
			t.Errorf("decode %s… as of tag %#x: %d tiles, %v; want %d", tc.enc[:10], tc.tag, len(got), err, tc.want)
		}
	}
}
