package materializer_test

import (
	"context"
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/materializer"
)

// TestExportPrediction exports a prediction view, whose inputs are joins of
// their own, and checks its scores against the model run on the inputs as
// of each spine row's time.
func TestExportPrediction(t *testing.T) {
	dir := t.TempDir()
	p := predProject(t, dir, nil)
	rt := newORT(t)
	net := writeModel(t, filepath.Join(dir, "model.onnx"), 5, 2, 1)
	runTime := time.Date(2026, 2, 1, 12, 0, 0, 0, time.UTC)
	d := predData{"profile": {}, "stats": {}}
	var events []runnerEvent
	for id := int64(1); id <= 6; id++ {
		at := runTime.Add(-time.Duration(id) * time.Minute)
		e := runnerEvent{UserID: id, TS: at, Age: id % 4, Score: float64(id) / 10, Active: id%2 == 0, Country: "fr", Clicks: id, Spend: float64(id) / 4}
		events = append(events, e)
		d["profile"][larder.Int64Key(id)] = larder.Row{EventTime: at, Values: []larder.Value{
			larder.Int64Value(e.Age), larder.Float64Value(e.Score), larder.BoolValue(e.Active), larder.StringValue(e.Country),
		}}
		d["stats"][larder.Int64Key(id)] = larder.Row{EventTime: at, Values: []larder.Value{larder.Int64Value(e.Clicks), larder.Float64Value(e.Spend)}}
	}
	writeParquet(t, filepath.Join(dir, "events", "part-0.parquet"), events)
	var spine []spineRow
	for id := int64(1); id <= 8; id++ {
		spine = append(spine, spineRow{UserID: ptr(id), At: runTime, Label: id})
	}
	writeParquet(t, filepath.Join(dir, "spine.parquet"), spine)

	m := materializer.New(p, nopStore{}, materializer.Options{Models: modelLoader(rt)})
	out := filepath.Join(dir, "out.parquet")
	if _, err := m.Export(context.Background(), materializer.ExportArgs{
		Spine: "spine.parquet", Output: out, Timestamp: "at", Features: []string{"pred:*"},
	}); err != nil {
		t.Fatalf("Export: %v", err)
	}
	rows := readExport(t, out)
	if len(rows) != len(spine) {
		t.Fatalf("%d rows exported, want %d", len(rows), len(spine))
	}
	for i, row := range rows {
		k := larder.Int64Key(spine[i].Label)
		if _, ok := d["profile"][k]; !ok {
			if got := row["pred:status"].String(); got != "missing" {
				t.Errorf("row %d: pred:status = %q, want missing", i, got)
			}
			continue
		}
		want := make([]float32, 2)
		net.Forward(expectedInputs(p.View("pred").Prediction, d, []larder.Key{k}, runTime), 1, want)
		for o, name := range []string{"pred:p_click", "pred:p_buy"} {
			got := row[name]
			if got.IsNull() || math.Abs(float64(got.Float()-want[o])) > 1e-5 {
				t.Errorf("row %d: %s = %v, want %v", i, name, got, want[o])
			}
		}
	}
}
