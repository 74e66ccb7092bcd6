package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"
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

// TestGRPCLoggerClientCommands checks that the commands that only call a
// server (rank, push, reload) keep grpc-go's warnings, such as its
// "addrConn.createTransport failed to connect" before their own error, for
// --log-level debug, and that other commands still show them.
func TestGRPCLoggerClientCommands(t *testing.T) {
	for _, tc := range []struct {
		args []string
		show bool
	}{
		{[]string{"rank", "home_feed", "42"}, false},
		{[]string{"push", "user_last_event", "--key", "42", "a=1"}, false},
		{[]string{"reload", "home_feed"}, false},
		{[]string{"--log-level", "debug", "rank", "home_feed", "42"}, true},
		{[]string{"views"}, true},
	} {
		var stderr bytes.Buffer
		g := &grpcLogger{}
		a := &app{stdin: bytes.NewReader(nil), stdout: &bytes.Buffer{}, stderr: &stderr, now: time.Now, grpcLog: g}
		a.run(t.Context(), append([]string{"-c", filepath.Join(t.TempDir(), "none.yaml")}, tc.args...))
		g.Warningf("[core] grpc: addrConn.createTransport failed to connect")
		if got := strings.Contains(stderr.String(), "createTransport"); got != tc.show {
			t.Errorf("larder %s: grpc-go's warning shown %v, want %v; stderr:\n%s", strings.Join(tc.args, " "), got, tc.show, stderr.String())
		}
	}
}
