package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/larder-dev/larder/demo"
)

// TestDemoRefusals runs the demo with flags it refuses: each is refused
// before anything is written, naming the flag and what it takes.
func TestDemoRefusals(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"negative users", []string{"demo", "--users", "-3"}, "--users -3: want 1 or more users; leave --users out for the default, 10000"},
		{"no items", []string{"demo", "--items", "0"}, "--items 0: want 1 or more items; leave --items out for the default, 2000"},
		{"no events", []string{"demo", "--events", "0"}, "--events 0: want 1 or more events; leave --events out for the default, 1000000"},
		{"a Redis address", []string{"--redis", "127.0.0.1:6379", "demo"},
			"--redis: the demo runs on an embedded Redis of its own, and writes to no other: leave --redis out " +
				"(to load the demo's data into your Redis, run larder --redis ADDR -c DIR/larder.yaml materialize after the demo)"},
		{"an address that is not one", []string{"demo", "--listen", "999.1.1.1:80"},
			"--listen 999.1.1.1:80: 999.1.1.1 is not an IP address (four numbers from 0 to 255): pass --listen HOST:PORT, such as 127.0.0.1:0 (any free port)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "demo")
			r := larderAt(t, t.Context(), t0, append(tt.args, "--dir", dir)...)
			want := "larder: " + strings.ReplaceAll(tt.want, "DIR", dir) + "\n"
			if r.code != 1 || r.stderr != want || r.stdout != "" {
				t.Errorf("exit %d, stdout %q, stderr\n%s\nwant 1, nothing and\n%s", r.code, r.stdout, r.stderr, want)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("the refused demo wrote %s (%v)", dir, err)
			}
		})
	}
}

// TestDemoKeepsAnEditedProject runs the demo, which writes its project file
// and the stamp of it; a demo again over that file, or over one an older
// demo wrote, would replace it (checkDemoProject, without a whole demo run
// each); over an edited file the demo is refused, and the file kept, until
// --force.
func TestDemoKeepsAnEditedProject(t *testing.T) {
	t.Parallel() // mostly waiting on child processes and servers
	dir := t.TempDir()
	path := filepath.Join(dir, demo.ProjectFile)
	run := func(extra ...string) result {
		args := append([]string{"demo", "--dir", dir, "--users", "50", "--items", "20", "--events", "500"}, extra...)
		return larderAt(t, t.Context(), t0, args...)
	}
	mustSucceed(t, run(), "the first demo")
	if err := checkDemoProject(dir, false); err != nil {
		t.Errorf("the demo again, over the project file it wrote: %v", err)
	}

	// A file the demo wrote but that another version of it would write
	// otherwise is not the user's: it is replaced too.
	older := append(demo.ProjectYAML(), "# as an older larder wrote it\n"...)
	if err := os.WriteFile(path, older, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, demoStamp), []byte(sha256Hex(older)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := checkDemoProject(dir, false); err != nil {
		t.Errorf("the demo over the project file an older demo wrote: %v", err)
	}

	edited := append(demo.ProjectYAML(), "# my own view goes here\n"...)
	if err := os.WriteFile(path, edited, 0o644); err != nil {
		t.Fatal(err)
	}
	r := run()
	want := "larder: demo: " + path + " was edited since the demo wrote it: " +
		"to keep it, run the demo in another folder (--dir) or move the file; to replace it with the demo's, pass --force\n"
	if r.code != 1 || r.stderr != want || r.stdout != "" {
		t.Errorf("the demo over an edited project file: exit %d, stdout %q, stderr\n%s\nwant 1, nothing and\n%s", r.code, r.stdout, r.stderr, want)
	}
	if got, _ := os.ReadFile(path); string(got) != string(edited) {
		t.Errorf("the refused demo changed %s", path)
	}

	mustSucceed(t, run("--force"), "demo --force")
	if got, _ := os.ReadFile(path); string(got) != string(demo.ProjectYAML()) {
		t.Errorf("demo --force did not write the demo's project file")
	}
}

// TestDemoKeepsAnotherProject runs the demo in a folder that holds a
// project file the demo did not write: it is refused, and the file kept.
func TestDemoKeepsAnotherProject(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, demo.ProjectFile)
	mine := []byte("project: mine\n")
	if err := os.WriteFile(path, mine, 0o644); err != nil {
		t.Fatal(err)
	}
	r := larderAt(t, t.Context(), t0, "demo", "--dir", dir)
	want := "larder: demo: " + path + " is not the demo's project file: " +
		"to keep it, run the demo in another folder (--dir) or move the file; to replace it with the demo's, pass --force\n"
	if r.code != 1 || r.stderr != want || r.stdout != "" {
		t.Errorf("exit %d, stdout %q, stderr\n%s\nwant 1, nothing and\n%s", r.code, r.stdout, r.stderr, want)
	}
	if got, _ := os.ReadFile(path); string(got) != string(mine) {
		t.Errorf("the refused demo changed %s", path)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("the refused demo wrote into %s: %v", dir, entries)
	}
}
