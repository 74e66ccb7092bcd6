package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
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

// TestJSONLinesCommandError checks that the error a command ends with is
// one record under --log-format json, however many lines it holds, and
// whether it comes from the command or from its command line.
func TestJSONLinesCommandError(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("project: x\nentities: 3\nviews: 4\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		says []string
	}{
		{[]string{"--log-format", "json", "-c", "no-such.yaml", "views"}, []string{"no-such.yaml"}},
		{[]string{"--log-format=json", "views", "--bogus"}, []string{"unknown flag: --bogus"}},
		{[]string{"--log-format", "json", "-c", bad, "views"}, []string{"entities", "\n", "views"}},
	} {
		r := larderAt(t, t.Context(), t0, tc.args...)
		var rec struct{ Level, Msg string }
		if r.code != 1 || json.Unmarshal([]byte(r.stderr), &rec) != nil || rec.Level != "ERROR" {
			t.Errorf("%q: exit %d, stderr %q; want 1 and one ERROR record", tc.args, r.code, r.stderr)
			continue
		}
		for _, s := range tc.says {
			if !strings.Contains(rec.Msg, s) {
				t.Errorf("%q: the record says %q, want %q in it", tc.args, rec.Msg, s)
			}
		}
	}
}
