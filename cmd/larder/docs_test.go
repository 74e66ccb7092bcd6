package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
