package materializer

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"
)

func TestMaxEventTime(t *testing.T) {
	le64 := func(v int64) []byte { return binary.LittleEndian.AppendUint64(nil, uint64(v)) }
	le32 := func(v int32) []byte { return binary.LittleEndian.AppendUint32(nil, uint32(v)) }
	millis := &boundColumn{leaf: 1, kind: parquet.Int64, conv: convTimestamp, nanos: int64(time.Millisecond)}
	date := &boundColumn{leaf: 0, kind: parquet.Int32, conv: convDate, nanos: int64(24 * time.Hour)}
	day := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		bc     *boundColumn
		stats  format.Statistics
		want   time.Time
		wantOK bool
	}{
		{"timestamp", millis, format.Statistics{MaxValue: le64(day.UnixMilli() + 1500)}, day.Add(1500 * time.Millisecond), true},
		{"deprecated max", millis, format.Statistics{Max: le64(day.UnixMilli())}, day, true},
		{"max_value first", millis, format.Statistics{Max: le64(0), MaxValue: le64(day.UnixMilli())}, day, true},
		{"date", date, format.Statistics{MaxValue: le32(int32(day.Unix() / 86400))}, day, true},
		{"negative date", date, format.Statistics{MaxValue: le32(-1)}, time.Date(1969, 12, 31, 0, 0, 0, 0, time.UTC), true},
		{"none", millis, format.Statistics{NullCount: 3}, time.Time{}, false},
		{"wrong length", millis, format.Statistics{MaxValue: le32(7)}, time.Time{}, false},
		{"empty", date, format.Statistics{MaxValue: []byte{}}, time.Time{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := &format.RowGroup{Columns: make([]format.ColumnChunk, 2)}
			g.Columns[tt.bc.leaf].MetaData.Statistics = tt.stats
			got, ok := maxEventTime(g, tt.bc)
			if ok != tt.wantOK || (ok && got != tt.want.UnixNano()) {
				t.Errorf("maxEventTime = %v, %v; want %v, %v", time.Unix(0, got).UTC(), ok, tt.want, tt.wantOK)
			}
		})
	}
	t.Run("missing column", func(t *testing.T) {
		if _, ok := maxEventTime(&format.RowGroup{}, millis); ok {
			t.Error("maxEventTime found statistics in a row group without columns")
		}
	})
}
