package materializer

import "github.com/larder-dev/larder"

// entities maps the keys of a view's entities to slots, numbered from 0 in
// the order the keys were first seen, with Go maps: the index of the views
// whose per-row work is dominated by other things than key lookups.
type entities struct {
	keyType  larder.Type
	intIndex map[int64]int32
	strIndex map[string]int32
	intKeys  []int64
	strKeys  []string
	// n is the number of slots.
	n int32
}

func (e *entities) init(t larder.Type) {
	e.keyType = t
	if t == larder.TypeString {
		e.strIndex = make(map[string]int32)
	} else {
		e.intIndex = make(map[int64]int32)
	}
}

// lookup returns the slot of the key held by value vi of pv, adding the key
// when it is new.
func (e *entities) lookup(pv *pageValues, bc *boundColumn, vi int) (slot int32, isNew bool) {
	if e.keyType == larder.TypeString {
		b := pv.bytes(vi)
		if s, ok := e.strIndex[string(b)]; ok {
			return s, false
		}
		slot = e.add()
		k := string(b)
		e.strIndex[k] = slot
		e.strKeys = append(e.strKeys, k)
		return slot, true
	}
	k := int64(pv.num(bc.conv, vi))
	if s, ok := e.intIndex[k]; ok {
		return s, false
	}
	slot = e.add()
	e.intIndex[k] = slot
	e.intKeys = append(e.intKeys, k)
	return slot, true
}

// add returns a new slot; the caller records its key.
func (e *entities) add() int32 {
	slot := e.n
	e.n++
	return slot
}

func (e *entities) key(slot int32) larder.Key {
	if e.keyType == larder.TypeString {
		return larder.StringKey(e.strKeys[slot])
	}
	return larder.Int64Key(e.intKeys[slot])
}
