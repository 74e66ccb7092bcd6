package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestJSONLines checks standard error under --log-format json: every line
// written for a person becomes a record at its level, lines that are JSON
// already pass through, and a line written in pieces is one record.
func TestJSONLines(t *testing.T) {
	var out bytes.Buffer
	j := newJSONLines(&out, func() time.Time { return t0 })
	fmt.Fprintf(j, "serving on 127.0.0.1:1\n")
	fmt.Fprintf(j, `{"level":"INFO","msg":"request"}`+"\n")
	fmt.Fprintf(j, "warning: ONNX Runtime is unavailable")
	fmt.Fprintf(j, ", so Rank answers degraded\n\nlarder: a failure\r\n")
	fmt.Fprintf(j, "progress without its line break")
	if err := j.Flush(); err != nil {
		t.Fatal(err)
	}
	want := []struct{ level, msg string }{
		{"INFO", "serving on 127.0.0.1:1"},
		{"INFO", "request"},
		{"WARN", "ONNX Runtime is unavailable, so Rank answers degraded"},
		{"ERROR", "a failure"},
		{"INFO", "progress without its line break"},
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(want), out.String())
	}
	for i, l := range lines {
		var rec struct{ Level, Msg string }
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("line %d is not JSON: %q", i+1, l)
		}
		if rec.Level != want[i].level || rec.Msg != want[i].msg {
			t.Errorf("line %d: %s %q, want %s %q", i+1, rec.Level, rec.Msg, want[i].level, want[i].msg)
		}
	}
}

// TestJSONLinesCommandError checks that the error a command ends with is a
// record under --log-format json.
func TestJSONLinesCommandError(t *testing.T) {
	r := larderAt(t, t.Context(), t0, "--log-format", "json", "-c", "no-such.yaml", "views")
	var rec struct{ Level, Msg string }
	if r.code != 1 || json.Unmarshal([]byte(r.stderr), &rec) != nil || rec.Level != "ERROR" || !strings.Contains(rec.Msg, "no-such.yaml") {
		t.Errorf("exit %d, stderr %q; want 1 and one ERROR record naming the file", r.code, r.stderr)
	}
}
