package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"
)

// TestGRPCLogger checks that grpc-go's own warnings and errors become
// records of the command's logger, and that its information lines are
// dropped.
func TestGRPCLogger(t *testing.T) {
	var out bytes.Buffer
	g := &grpcLogger{}
	g.logger.Store(slog.New(slog.NewJSONHandler(&out, nil)))
	g.Infof("dialing %s", "x")
	g.Warningf("transport: %s", "closing")
	g.Errorln("balancer", "failed")
	var recs []struct{ Level, Msg, From string }
	for _, l := range bytes.Split(bytes.TrimSpace(out.Bytes()), []byte("\n")) {
		var r struct{ Level, Msg, From string }
		if err := json.Unmarshal(l, &r); err != nil {
			t.Fatalf("not a record: %q", l)
		}
		recs = append(recs, r)
	}
	if len(recs) != 2 || recs[0].Level != "WARN" || recs[0].Msg != "transport: closing" || recs[0].From != "grpc" ||
		recs[1].Level != "ERROR" || recs[1].Msg != "balancer failed" {
		t.Errorf("records %+v; want a WARN and an ERROR from grpc, and no INFO", recs)
	}
}
