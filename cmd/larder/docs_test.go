package main

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/larder-dev/larder/demo"
)

// TestDocsCommands checks every larder command line in the README's and
// docs/'s code blocks (`larder …`, `./bin/larder …`, `$ larder …`) against
// the binary's command tree, as TestDeployCommands checks deploy/: the
// subcommand exists, each flag exists and its value parses, and the
// arguments are ones the subcommand takes. Lines with placeholders in
// capitals (ADDR, VIEW) or angle brackets are skipped.
func TestDocsCommands(t *testing.T) {
	files, err := filepath.Glob("../../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, "../../README.md")
	checked := 0
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		inBlock := false
		for i, line := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "```") {
				inBlock = !inBlock
				continue
			}
			if !inBlock {
				continue
			}
			line = strings.ReplaceAll(line, "./bin/larder", "larder")
			args, ok := shellLarder(line)
			if !ok || len(args) == 0 || placeholder(args) {
				continue
			}
			checked++
			if _, err := parseCommand(args); err != nil {
				t.Errorf("%s:%d: larder %s: %v", filepath.Base(file), i+1, strings.Join(args, " "), err)
			}
		}
	}
	if checked < 40 {
		t.Errorf("checked %d larder command lines in the docs, want the tour's and the guides'", checked)
	}
}

// placeholder reports whether args hold a placeholder for the reader to
// fill in rather than a value.
func placeholder(args []string) bool {
	for _, a := range args {
		if strings.HasSuffix(a, ",") || strings.HasSuffix(a, ")") {
			return true // a diagram's label, not a command line
		}
		if strings.ContainsAny(a, "<>…") || strings.Contains(a, "...") {
			return true
		}
		if len(a) > 1 && strings.ToUpper(a) == a && strings.ContainsAny(a, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") && !strings.HasPrefix(a, "-") {
			return true
		}
	}
	return false
}

// TestReadmeModelHash checks the model version that the README's
// transcripts show (the demo's Rank line, grpcurl's modelVersion, `rank
// --explain`) against the re-rank model that `larder demo` trains with its
// defaults: from a larder export of its impressions, at any time of day
// (the data set is the same, shifted to end at the run's time; see the
// demo package). `make docs` writes the transcripts again when it changes.
func TestReadmeModelHash(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	shown := regexp.MustCompile(`sha256:[0-9a-f]{12}`).FindAllString(string(readme), -1)
	if len(shown) < 3 {
		t.Fatalf("the README shows %d model versions, want the demo's, grpcurl's and rank --explain's", len(shown))
	}
	// docs/operations.md's transcript of rank --explain is of the demo's
	// server too.
	ops, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	explained := regexp.MustCompile(`(?m)^model (sha256:[0-9a-f]{12});`).FindAllStringSubmatch(string(ops), -1)
	if len(explained) == 0 {
		t.Fatal("docs/operations.md shows no transcript of rank --explain")
	}
	for _, m := range explained {
		shown = append(shown, m[1])
	}
	dir := t.TempDir()
	ds, err := demo.Generate(t.Context(), dir, demo.Options{Users: demo.DefaultUsers, Items: demo.DefaultItems, Events: demo.DefaultEvents, Seed: 1, Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	a := &app{stdout: io.Discard, stderr: io.Discard, now: time.Now}
	path := filepath.Join(dir, "models", "rerank.onnx")
	if err := a.trainDemoModel(t.Context(), ds, dir, path); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	want := "sha256:" + hex.EncodeToString(sum[:6])
	for _, v := range shown {
		if v != want {
			t.Errorf("the README or docs/operations.md shows model %s; the demo trains %s: run `make docs` (the README), or larder rank --explain on the demo's server (docs/operations.md)", v, want)
		}
	}
}
