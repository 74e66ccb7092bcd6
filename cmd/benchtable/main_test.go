package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestParseAndWrite(t *testing.T) {
	in := `goos: linux
BenchmarkRead1x20/larder-2         	   30000	     40000 ns/op	     500 B/op	      19 allocs/op
BenchmarkRead1x20/go-redis-floor-2 	   30000	     32000 ns/op
BenchmarkLatest1M/materialize-2    	       1	 500000000 ns/op	   2000000 rows/s
BenchmarkLatest1M/floor-generic-reader-2 	1	 900000000 ns/op	   1000000 rows/s
PASS
`
	results, err := parse(strings.NewReader(in), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := results["Read1x20/larder"]["allocs/op"]; got != 19 {
		t.Errorf("allocs = %v, want 19", got)
	}
	var out bytes.Buffer
	write(&out, results)
	for _, want := range []string{"1.25× the floor", "200% of the floor", "| GetFeatures, 1 × 20 (gRPC) | not run |"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
}
