package main

import (
	"strings"
	"testing"
	"time"
)

// TestReport feeds a run's events to the report and checks what it prints:
// package starts, go test's own lines, the output of failing tests only,
// the slowest top-level tests, and the count.
func TestReport(t *testing.T) {
	events := strings.Join([]string{
		`{"Action":"start","Package":"a"}`,
		`{"Action":"start","Package":"b"}`,
		`{"Action":"run","Package":"a","Test":"TestOK"}`,
		`{"Action":"output","Package":"a","Test":"TestOK","Output":"=== RUN   TestOK\n"}`,
		`{"Action":"output","Package":"a","Test":"TestOK","Output":"    a_test.go:9: quiet\n"}`,
		`{"Action":"output","Package":"a","Test":"TestOK","Output":"--- PASS: TestOK (0.00s)\n"}`,
		`{"Action":"pass","Package":"a","Test":"TestOK","Elapsed":0.25}`,
		`{"Action":"output","Package":"b","Test":"TestBad","Output":"=== RUN   TestBad\n"}`,
		`{"Action":"output","Package":"b","Test":"TestBad","Output":"    b_test.go:7: loud\n"}`,
		`{"Action":"output","Package":"b","Test":"TestBad","Output":"--- FAIL: TestBad (0.00s)\n"}`,
		`{"Action":"fail","Package":"b","Test":"TestBad","Elapsed":3.04}`,
		`{"Action":"output","Package":"a","Test":"TestSkip","Output":"--- SKIP: TestSkip\n"}`,
		`{"Action":"skip","Package":"a","Test":"TestSkip"}`,
		`{"Action":"pass","Package":"a","Test":"TestOK/sub","Elapsed":0.2}`,
		`{"Action":"output","Package":"a","Output":"PASS\n"}`,
		`{"Action":"output","Package":"a","Output":"ok  \ta\t0.1s\n"}`,
		`{"Action":"pass","Package":"a"}`,
		`{"Action":"output","Package":"b","Test":"TestHang","Output":"=== RUN   TestHang\n"}`,
		`{"Action":"output","Package":"b","Output":"panic: test timed out after 1s\n"}`,
		`{"Action":"output","Package":"b","Output":"FAIL\tb\t1.0s\n"}`,
		`{"Action":"fail","Package":"b"}`,
		`{"ImportPath":"c","Action":"build-output","Output":"# c\n"}`,
		`{"ImportPath":"c","Action":"build-output","Output":"c/c.go:1: syntax error\n"}`,
		`not an event`,
	}, "\n")
	var out strings.Builder
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r := newReport(&out, func() time.Time { at = at.Add(time.Second); return at })
	if err := r.read(strings.NewReader(events)); err != nil {
		t.Fatal(err)
	}
	r.close()
	want := `1s      a
2s      b
=== RUN   TestBad
    b_test.go:7: loud
--- FAIL: TestBad (0.00s)
ok  	a	0.1s
panic: test timed out after 1s
FAIL	b	1.0s
--- TestHang did not end; its output:
=== RUN   TestHang
# c
c/c.go:1: syntax error
not an event
slowest tests:
      3s  b TestBad
   300ms  a TestOK
tests: 2 passed, 1 failed, 1 skipped (subtests included) in 3s
`
	if got := out.String(); got != want {
		t.Errorf("printed:\n%s\nwant:\n%s", got, want)
	}
	if r.failed != 1 {
		t.Errorf("failed = %d, want 1", r.failed)
	}
}
