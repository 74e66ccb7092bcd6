package main

import (
	"testing"

	larderclient "github.com/larder-dev/larder/client"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
)

// columnsOf reads resp through the client package's accessors, failing the
// test when it does not hold together.
func columnsOf(tb testing.TB, resp *larderv1.GetFeaturesResponse) *larderclient.Features {
	tb.Helper()
	f, err := larderclient.NewFeatures(resp)
	if err != nil {
		tb.Fatalf("GetFeatures response: %v", err)
	}
	return f
}

// columnNames returns the names of resp's columns, in order.
func columnNames(resp *larderv1.GetFeaturesResponse) []string {
	names := make([]string, len(resp.GetColumns()))
	for i, c := range resp.GetColumns() {
		names[i] = c.GetName()
	}
	return names
}
