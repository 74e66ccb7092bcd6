package materializer

import (
	"context"
	"fmt"
	"math"
	"sync"
)

// rowFilter is the rule every computation reading a source applies to a
// row with a key and an event time before using it: a row after runTime is
// skipped (SkipAfterRunTime), and one before since is counted apart
// (SkipBeforeWatermark; since is math.MinInt64 but for incremental runs).
// Times are Unix nanoseconds.
type rowFilter struct {
	runTime, since int64
}

// keep reports whether a row with event time t is used, counting it in sk
// when it is not.
func (f rowFilter) keep(t int64, sk *skipCounts) bool {
	switch {
	case t > f.runTime:
		sk.afterRun++
		return false
	case t < f.since:
		sk.beforeSince++
		return false
	}
	return true
}

// rowScan is one row group being read by scanRows: its key and event-time
// columns, and the other columns read in step with them.
type rowScan struct {
	keys, times *cursor
	kbc, tbc    *boundColumn
	// cols are the other columns, and vis the index in each one's page
	// values of the current row's value, -1 when it is null.
	cols []*cursor
	vis  []int
}

// intKey returns value kvi of the key column, an int64 key; bytesKey
// returns it for a string key, valid until the next row.
func (s *rowScan) intKey(kvi int) int64    { return int64(s.keys.pv.num(s.kbc.conv, kvi)) }
func (s *rowScan) bytesKey(kvi int) []byte { return s.keys.pv.bytes(kvi) }

// rowSink receives the rows of a row group from scanRows.
type rowSink interface {
	// row takes usable row r of the row group: its key is value kvi of
	// s.keys.pv, its event time t, and s.vis locates the values of its
	// other columns.
	row(s *rowScan, r, kvi int, t int64)
	// cut ends a stretch of rows with the counts of its rows that were
	// skipped; last is set for the stretch that ends the row group. An
	// error stops the scan.
	cut(sk skipCounts, last bool) error
}

// runSink is a rowSink that also takes runs of rows of the common layout,
// int64 keys and timestamps stored plainly without nulls, straight from the
// pages: rows r to r+len(kv) of keys kv and event times tv, in the units of
// the time column (s.tbc.nanosOf converts them). It applies f to each, as
// scanRows would, counting the rows it skips in sk.
type runSink interface {
	rowSink
	run(s *rowScan, r int, kv, tv []int64, f rowFilter, sk *skipCounts)
}

// ownerSink is a rowSink that reads only some rows of a row group, those
// whose key it owns (a partition's): a row it does not own is neither used
// nor counted.
type ownerSink interface {
	rowSink
	owns(s *rowScan, kvi int) bool
}

// scanRows reads the rows of rg in order, its columns keyCol (the key) and
// timeCol (the event time) and cols in step, and sorts them: a row with a
// null key, a null event time or one that f does not keep is counted by
// reason, and every other row goes to sink. It is the loop every
// computation reading a source shares, materializing or exporting.
//
// When batch is positive, the rows are cut into stretches of batch rows,
// counted whether used or not, each ended by sink.cut; the last stretch,
// perhaps shorter or empty, ends with the row group. It returns an error
// when a column chunk cannot be read or disagrees with the row group, the
// error of sink.cut, or ctx.Err() when ctx ends (checked every batchRows
// rows at least).
func scanRows(ctx context.Context, rg *rowGroup, keyCol, timeCol int, cols []int, f rowFilter, batch int, sink rowSink) error {
	if rg.numRows > math.MaxInt32 {
		return fmt.Errorf("row group of %d rows is too large (at most %d)", rg.numRows, math.MaxInt32)
	}
	if err := checkTimeRange(rg, timeCol); err != nil {
		return err
	}
	s := &rowScan{}
	kbc, kchunk := rg.chunk(keyCol)
	tbc, tchunk := rg.chunk(timeCol)
	s.kbc, s.tbc = kbc, tbc
	s.keys, s.times = newCursor(s.kbc, kchunk), newCursor(s.tbc, tchunk)
	defer s.keys.close()
	defer s.times.close()
	s.cols, s.vis = make([]*cursor, len(cols)), make([]int, len(cols))
	for i, c := range cols {
		bc, chunk := rg.chunk(c)
		s.cols[i] = newCursor(bc, chunk)
		defer s.cols[i].close()
	}
	owner, _ := sink.(ownerSink)
	runs, _ := sink.(runSink)
	plain := runs != nil && len(cols) == 0 && s.kbc.conv == convInt64 && s.tbc.conv == convTimestamp
	stretch := batch
	if stretch <= 0 {
		stretch = batchRows
	}
	var sk skipCounts
	rows := 0 // in the current stretch
	numRows := int(rg.numRows)
	for r := 0; r < numRows; {
		if rows >= stretch {
			// The stretch is full and more rows follow.
			if err := ctx.Err(); err != nil {
				return err
			}
			if batch > 0 {
				if err := sink.cut(sk, false); err != nil {
					return err
				}
				sk = skipCounts{}
			}
			rows = 0
		}
		if plain {
			if err := s.keys.ready(); err != nil {
				return err
			}
			if err := s.times.ready(); err != nil {
				return err
			}
			n := min(s.keys.left(), s.times.left(), numRows-r, stretch-rows)
			if kv, tv := s.keys.plainInt64(n), s.times.plainInt64(n); kv != nil && tv != nil {
				runs.run(s, r, kv, tv, f, &sk)
				s.keys.skip(n)
				s.times.skip(n)
				r += n
				rows += n
				continue
			}
		}
		kvi, err := s.keys.next()
		if err != nil {
			return err
		}
		tvi, err := s.times.next()
		if err != nil {
			return err
		}
		for i, c := range s.cols {
			if s.vis[i], err = c.next(); err != nil {
				return err
			}
		}
		row := r
		r++
		rows++
		switch {
		case kvi < 0:
			sk.nullKey++
		case owner != nil && !owner.owns(s, kvi):
		case tvi < 0:
			sk.nullTime++
		default:
			if t := s.times.pv.eventTime(s.tbc, tvi); f.keep(t, &sk) {
				sink.row(s, row, kvi, t)
			}
		}
	}
	if err := s.keys.finish(); err != nil {
		return err
	}
	if err := s.times.finish(); err != nil {
		return err
	}
	for _, c := range s.cols {
		if err := c.finish(); err != nil {
			return err
		}
	}
	return sink.cut(sk, true)
}

// partBuf is a buffer of rows of one partition.
type partBuf interface {
	len() int
	reset()
}

// fanOut hands the parts of batches of rows, one part per partition, to
// one goroutine per partition, which folds its parts in the order they are
// sent, so that each entity's rows are folded in read order. Folded buffers
// go back to their partition's pool for the next batches.
type fanOut[P partBuf] struct {
	in, free []chan P
	fresh    func() P
	wg       sync.WaitGroup
}

// startFanOut starts the goroutines of n partitions, each calling fold
// with every part sent to it; fresh makes a new buffer when a pool is
// empty. fold must leave the buffer empty.
func startFanOut[P partBuf](n int, fresh func() P, fold func(part int, buf P)) *fanOut[P] {
	f := &fanOut[P]{in: make([]chan P, n), free: make([]chan P, n), fresh: fresh}
	for p := range n {
		f.in[p] = make(chan P, 4)
		f.free[p] = make(chan P, 4*n+8)
		f.wg.Go(func() {
			for buf := range f.in[p] {
				fold(p, buf)
				f.recycle(p, buf)
			}
		})
	}
	return f
}

func (f *fanOut[P]) recycle(p int, buf P) {
	select {
	case f.free[p] <- buf:
	default:
	}
}

// parts returns a buffer for each partition, from its pool when it has one.
func (f *fanOut[P]) parts() []P {
	parts := make([]P, len(f.in))
	for p := range parts {
		select {
		case parts[p] = <-f.free[p]:
		default:
			parts[p] = f.fresh()
		}
	}
	return parts
}

// send hands each non-empty part to its partition's goroutine, and returns
// the empty ones to their pools. It returns ctx.Err() when ctx ends first.
func (f *fanOut[P]) send(ctx context.Context, parts []P) error {
	for p, buf := range parts {
		if buf.len() == 0 {
			f.recycle(p, buf)
			continue
		}
		select {
		case f.in[p] <- buf:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// stop waits for every part sent to be folded.
func (f *fanOut[P]) stop() {
	for _, in := range f.in {
		close(in)
	}
	f.wg.Wait()
}

// checkTimeRange returns an error when the statistics of rg's event-time
// column (timeCol) say that it holds a time Unix nanoseconds cannot: before
// 1677 or after 2262. Such a column is corrupt, or its unit is not what it
// says (seconds written as days, say); its times would saturate, and its
// rows all count as before every window or after the run time, so the run
// stops instead. A row group without statistics is not checked.
func checkTimeRange(rg *rowGroup, timeCol int) error {
	bc := rg.file.cols[timeCol]
	if bc.nanos <= 1 {
		return nil // nanoseconds: every value is a time
	}
	g := &rg.file.pf.Metadata().RowGroups[rg.index]
	lo, lok := minEventTime(g, bc)
	hi, hok := maxEventTime(g, bc)
	if (lok && lo == math.MinInt64) || (hok && hi == math.MaxInt64) {
		return fmt.Errorf("column %q holds event times outside the years 1677 to 2262, which larder cannot hold: the column is corrupt or its unit is wrong", bc.spec.column)
	}
	return nil
}
