package server_test

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/larder-dev/larder/client"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
)

// cellValue is one value of a GetFeatures response, with the status and
// event time of its view's row.
type cellValue struct {
	value     *larderv1.Value
	status    larderv1.FeatureStatus
	eventTime time.Time
}

func (c cellValue) equal(d cellValue) bool {
	return proto.Equal(c.value, d.value) && c.status == d.status && c.eventTime.Equal(d.eventTime)
}

func (c cellValue) String() string {
	return fmt.Sprintf("{%v %s %s}", c.value, c.status, c.eventTime.Format(time.RFC3339Nano))
}

// columns reads resp through the client package's accessors, failing the
// test when it does not hold together.
func columns(tb testing.TB, resp *larderv1.GetFeaturesResponse) *client.Features {
	tb.Helper()
	f, err := client.NewFeatures(resp)
	if err != nil {
		tb.Fatalf("response: %v", err)
	}
	return f
}

// cellAt returns the value of column col in row row.
func cellAt(f *client.Features, col, row int) cellValue {
	return cellValue{value: f.Value(col, row), status: f.Status(col, row), eventTime: f.EventTime(col, row)}
}

// columnNames returns the names of resp's columns, in order.
func columnNames(resp *larderv1.GetFeaturesResponse) []string {
	names := make([]string, len(resp.GetColumns()))
	for i, c := range resp.GetColumns() {
		names[i] = c.GetName()
	}
	return names
}

// rowsOf returns resp's values row by row, in column order; nil when resp
// does not hold together.
func rowsOf(resp *larderv1.GetFeaturesResponse) [][]cellValue {
	f, err := client.NewFeatures(resp)
	if err != nil {
		return nil
	}
	rows := make([][]cellValue, f.Rows())
	for i := range rows {
		rows[i] = make([]cellValue, f.Columns())
		for j := range rows[i] {
			rows[i][j] = cellAt(f, j, i)
		}
	}
	return rows
}
