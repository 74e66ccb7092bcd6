package materializer

import (
	"fmt"
	"io"

	"github.com/parquet-go/parquet-go"
)

// cursor walks a non-repeated column chunk one row at a time, so that several
// columns can be read in step without holding a row group in memory.
type cursor struct {
	bc    *boundColumn
	pages parquet.Pages
	page  parquet.Page
	pv    pageValues
	sp    scalarPage
	k     int // next row of the page
	vi    int // next value of the page
	rows  int // rows read from earlier pages
}

func newCursor(bc *boundColumn, chunk parquet.ColumnChunk) *cursor {
	return &cursor{bc: bc, pages: chunk.Pages()}
}

// next moves to the next row and returns the index of its value in c.pv, or
// -1 when the value is null. It returns an error when the chunk has no more
// rows or a page cannot be read.
func (c *cursor) next() (int, error) {
	if err := c.ready(); err != nil {
		return 0, err
	}
	k := c.k
	c.k++
	if c.sp.defs != nil && c.sp.defs[k] != c.sp.maxDef {
		return -1, nil
	}
	vi := c.vi
	c.vi++
	if vi >= c.pv.n {
		return 0, fmt.Errorf("column %q: %w: a page has fewer values than rows", c.bc.spec.column, errCorrupt)
	}
	return vi, nil
}

func (c *cursor) advance() error {
	if c.page != nil {
		c.rows += c.sp.rows
		parquet.Release(c.page)
		c.page = nil
	}
	p, err := c.pages.ReadPage()
	if err == io.EOF {
		return fmt.Errorf("column %q: %w: it has %d rows, fewer than its row group", c.bc.spec.column, errCorrupt, c.rows)
	}
	if err != nil {
		return err
	}
	c.page = p
	c.sp = newScalarPage(p, c.bc)
	if c.sp.rows < 0 {
		return fmt.Errorf("column %q: %w: levels and values disagree", c.bc.spec.column, errCorrupt)
	}
	c.pv, err = loadValues(p, c.bc)
	c.k, c.vi = 0, 0
	return err
}

// finish checks that every row of the chunk was read, and releases the cursor.
func (c *cursor) finish() error {
	defer c.close()
	if c.page != nil && c.k != c.sp.rows {
		return fmt.Errorf("column %q: %w: it has more rows than its row group", c.bc.spec.column, errCorrupt)
	}
	for {
		p, err := c.pages.ReadPage()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		rows := p.NumRows()
		parquet.Release(p)
		if rows > 0 {
			return fmt.Errorf("column %q: %w: it has more rows than its row group", c.bc.spec.column, errCorrupt)
		}
	}
}

// close releases the current page and the page reader.
func (c *cursor) close() {
	if c.page != nil {
		parquet.Release(c.page)
		c.page = nil
	}
	if c.pages != nil {
		c.pages.Close()
		c.pages = nil
	}
}

// ready makes sure the current page has a row left to read, reading the
// next page when needed. It returns an error when the chunk has no more
// rows or a page cannot be read.
func (c *cursor) ready() error {
	for c.page == nil || c.k == c.sp.rows {
		if err := c.advance(); err != nil {
			return err
		}
	}
	return nil
}

// plainInt64 returns the values of the next n rows of the current page, which
// must hold them, when the page stores them as they are: INT64 values, no
// nulls, no dictionary. It returns nil otherwise, or when the page holds
// fewer values than rows.
func (c *cursor) plainInt64(n int) []int64 {
	if c.sp.defs != nil || c.pv.idx != nil || c.pv.i64 == nil || c.vi+n > len(c.pv.i64) {
		return nil
	}
	return c.pv.i64[c.vi : c.vi+n]
}

// skip moves past n rows of the current page whose values plainInt64
// returned.
func (c *cursor) skip(n int) {
	c.k += n
	c.vi += n
}

// left returns the rows of the current page not yet read.
func (c *cursor) left() int { return c.sp.rows - c.k }
