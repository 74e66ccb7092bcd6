// Command testrun runs `go test -json` with its arguments and prints a short
// account of it: a line when each package starts, go test's own line when
// it ends (ok, FAIL, or no test files), the whole output of every test that
// fails or never ends, and a closing count. `make test` runs it, so that a
// long run shows which package it is on, and a failure is not lost in
// thousands of passing lines. It exits with go test's status.
//
// Usage:
//
//	go run ./cmd/testrun [go test flags] [packages]
package main

import (
	"bufio"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run runs go test -json with args, reports to stdout, and returns the exit
// status: go test's, or 1 when a test failed although go test exited 0.
func run(args []string, stdout, stderr io.Writer) int {
	cmd := exec.Command("go", append([]string{"test", "-json"}, args...)...)
	cmd.Stderr = stderr
	events, err := cmd.StdoutPipe()
	if err != nil {
		fmt.Fprintf(stderr, "testrun: %v\n", err)
		return 1
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(stderr, "testrun: %v\n", err)
		return 1
	}
	r := newReport(stdout, time.Now)
	if err := r.read(events); err != nil {
		fmt.Fprintf(stderr, "testrun: reading go test's output: %v\n", err)
	}
	err = cmd.Wait()
	r.close()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return exit.ExitCode()
	case err != nil:
		fmt.Fprintf(stderr, "testrun: %v\n", err)
		return 1
	case r.failed > 0:
		return 1
	}
	return 0
}

// event is one line of `go test -json` (see `go doc test2json`).
type event struct {
	Action     string
	Package    string
	Test       string
	Output     string
	Elapsed    float64 // seconds, of pass and fail events
	ImportPath string  // of build-output and build-fail events
}

// slowestShown is how many of the slowest tests the closing account names.
const slowestShown = 8

// timing is how long one top-level test ran.
type timing struct {
	pkg, test string
	elapsed   time.Duration
}

// report turns events into the short account.
type report struct {
	w     io.Writer
	now   func() time.Time
	start time.Time
	// output holds each running test's output, by package and test, until
	// the test passes (dropped), fails or never ends (printed).
	output map[[2]string]*strings.Builder

	passed, failed, skipped int
	// tests holds how long each top-level test that passed or failed ran,
	// for the slowest to be named at the end.
	tests []timing
}

func newReport(w io.Writer, now func() time.Time) *report {
	return &report{w: w, now: now, start: now(), output: map[[2]string]*strings.Builder{}}
}

// read reads events until r ends. A line that is not an event is printed as
// it is.
func (r *report) read(in io.Reader) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil || e.Action == "" {
			fmt.Fprintln(r.w, sc.Text())
			continue
		}
		r.event(e)
	}
	return sc.Err()
}

func (r *report) event(e event) {
	switch {
	case e.Action == "build-output":
		fmt.Fprint(r.w, e.Output)
	case e.Test == "":
		r.packageEvent(e)
	default:
		r.testEvent(e)
	}
}

func (r *report) packageEvent(e event) {
	switch e.Action {
	case "start":
		fmt.Fprintf(r.w, "%-8s%s\n", r.elapsed(), e.Package)
	case "output":
		// go test's own lines: "ok  \tpkg\t1.2s", "FAIL\tpkg", a panic
		// outside any test. Without -v it would not print the bare PASS.
		if e.Output != "PASS\n" {
			fmt.Fprint(r.w, e.Output)
		}
	case "fail":
		// A package that failed or timed out with tests still running:
		// their output tells where they were.
		for k, b := range r.output {
			if k[0] == e.Package {
				fmt.Fprintf(r.w, "--- %s did not end; its output:\n%s", k[1], b)
				delete(r.output, k)
			}
		}
	}
}

func (r *report) testEvent(e event) {
	k := [2]string{e.Package, e.Test}
	switch e.Action {
	case "output":
		b := r.output[k]
		if b == nil {
			b = &strings.Builder{}
			r.output[k] = b
		}
		b.WriteString(e.Output)
	case "pass", "skip":
		r.timed(e)
		if e.Action == "pass" {
			r.passed++
		} else {
			r.skipped++
		}
		delete(r.output, k)
	case "fail":
		r.timed(e)
		r.failed++
		if b := r.output[k]; b != nil {
			fmt.Fprint(r.w, b)
		}
		delete(r.output, k)
	}
}

// timed keeps how long a top-level test ran.
func (r *report) timed(e event) {
	if e.Action == "skip" || strings.Contains(e.Test, "/") {
		return
	}
	r.tests = append(r.tests, timing{e.Package, e.Test, time.Duration(e.Elapsed * float64(time.Second))})
}

// close prints what is left of tests that never ended, the slowest tests,
// and the count.
func (r *report) close() {
	for k, b := range r.output {
		fmt.Fprintf(r.w, "--- %s (%s) did not end; its output:\n%s", k[1], k[0], b)
	}
	clear(r.output)
	if len(r.tests) > 0 {
		slices.SortStableFunc(r.tests, func(a, b timing) int { return cmp.Compare(b.elapsed, a.elapsed) })
		fmt.Fprintf(r.w, "slowest tests:\n")
		for _, t := range r.tests[:min(len(r.tests), slowestShown)] {
			fmt.Fprintf(r.w, "%8s  %s %s\n", t.elapsed.Round(100*time.Millisecond), t.pkg, t.test)
		}
	}
	fmt.Fprintf(r.w, "tests: %d passed, %d failed, %d skipped (subtests included) in %s\n",
		r.passed, r.failed, r.skipped, r.elapsed())
}

// elapsed is the time since the run began, in whole seconds.
func (r *report) elapsed() string {
	return r.now().Sub(r.start).Round(time.Second).String()
}
