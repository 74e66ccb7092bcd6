package larder_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/larder-dev/larder"
)

// maxParseMessage bounds the message of an error that quotes its input:
// a caller's mistake is named, not echoed at any length.
const maxParseMessage = 512

// FuzzSplitRef checks that SplitRef splits at the first colon, and reports
// ok exactly when both parts are there.
func FuzzSplitRef(f *testing.F) {
	for _, seed := range []string{
		"user_profile:age", "user_profile:*", "view:", ":feature", ":", "", "no_colon",
		"a:b:c", "::", "request:hour", "v:\xff", "\xff:\xfe", "é:ü", "v:f\x00",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, ref string) {
		view, feature, ok := larder.SplitRef(ref)
		i := strings.IndexByte(ref, ':')
		if want := i > 0 && i < len(ref)-1; ok != want {
			t.Fatalf("SplitRef(%q) ok = %v, want %v", ref, ok, want)
		}
		if i < 0 {
			if view != ref || feature != "" {
				t.Fatalf("SplitRef(%q) = %q, %q; want the whole of it as the view", ref, view, feature)
			}
			return
		}
		if view+":"+feature != ref || strings.Contains(view, ":") {
			t.Fatalf("SplitRef(%q) = %q, %q; not split at the first colon", ref, view, feature)
		}
	})
}

// FuzzParseKey checks that ParseKey never panics, that it refuses with an
// *InvalidError of bounded length, and that the keys it accepts are what
// was written: a string key keeps every byte, an int64 key parses back from
// its canonical text.
func FuzzParseKey(f *testing.F) {
	for _, seed := range []struct {
		typ uint8
		s   string
	}{
		{uint8(larder.TypeInt64), "123"}, {uint8(larder.TypeInt64), "-9223372036854775808"},
		{uint8(larder.TypeInt64), "9223372036854775808"}, {uint8(larder.TypeInt64), "+7"},
		{uint8(larder.TypeInt64), "0x10"}, {uint8(larder.TypeInt64), " 1"}, {uint8(larder.TypeInt64), ""},
		{uint8(larder.TypeInt64), "1_000"}, {uint8(larder.TypeInt64), "\xff"},
		{uint8(larder.TypeString), "user-1"}, {uint8(larder.TypeString), ""}, {uint8(larder.TypeString), "\xff\x00"},
		{uint8(larder.TypeInvalid), "1"}, {uint8(larder.TypeFloat64), "1.5"}, {uint8(larder.TypeStringList), "a"},
		{200, "x"},
	} {
		f.Add(seed.typ, seed.s)
	}
	f.Fuzz(func(t *testing.T, typ uint8, s string) {
		k, err := larder.ParseKey(larder.Type(typ), s)
		if err != nil {
			var ie *larder.InvalidError
			if !errors.As(err, &ie) {
				t.Fatalf("ParseKey(%s, %q) error %v (%T), want an *InvalidError", larder.Type(typ), s, err, err)
			}
			if len(err.Error()) > maxParseMessage {
				t.Fatalf("ParseKey(%s, %d bytes): %d-byte message, want at most %d", larder.Type(typ), len(s), len(err.Error()), maxParseMessage)
			}
			if k.Type() != larder.TypeInvalid {
				t.Fatalf("ParseKey(%s, %q) failed with key %#v, want the zero Key", larder.Type(typ), s, k)
			}
			return
		}
		switch larder.Type(typ) {
		case larder.TypeString:
			if k.Type() != larder.TypeString || k.Str() != s || k.String() != s {
				t.Fatalf("ParseKey(string, %q) = %#v", s, k)
			}
		case larder.TypeInt64:
			if k.Type() != larder.TypeInt64 {
				t.Fatalf("ParseKey(int64, %q) = %#v", s, k)
			}
			again, err := larder.ParseKey(larder.TypeInt64, k.String())
			if err != nil || again != k || string(k.AppendCanonical(nil)) != strconv.FormatInt(k.Int64(), 10) {
				t.Fatalf("ParseKey(int64, %q) = %#v, whose text %q parses to %#v, %v", s, k, k.String(), again, err)
			}
		default:
			t.Fatalf("ParseKey(%s, %q) = %#v, want an error: keys are int64 or string", larder.Type(typ), s, k)
		}
	})
}

// FuzzParseWindow checks that ParseWindow never panics, that every window
// it accepts is positive, labelled as written and, in days, exactly that
// many days long, and that its refusals are bounded in length.
func FuzzParseWindow(f *testing.F) {
	for _, seed := range []string{
		"30m", "1h", "36h", "1d", "7d", "30d", "0d", "-1d", "d", "", "1", "1x", "1h30m", "1.5h", ".5h",
		"+2d", "0x1d", "1e3d", "9999999999999999999d", "2562047h", "2562048h", "1ns", "-0", "0", "\xffd", "1dd",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		w, err := larder.ParseWindow(s)
		if err != nil {
			if len(err.Error()) > maxParseMessage {
				t.Fatalf("ParseWindow(%d bytes): %d-byte message, want at most %d", len(s), len(err.Error()), maxParseMessage)
			}
			if w != (larder.Window{}) {
				t.Fatalf("ParseWindow(%q) failed with window %+v, want the zero Window", s, w)
			}
			return
		}
		if w.Duration <= 0 || w.Label != s {
			t.Fatalf("ParseWindow(%q) = %+v, want a positive window labelled as written", s, w)
		}
		if n, ok := strings.CutSuffix(s, "d"); ok {
			days, err := strconv.ParseInt(n, 10, 64)
			if err != nil || w.Duration%(24*time.Hour) != 0 || int64(w.Duration/(24*time.Hour)) != days {
				t.Fatalf("ParseWindow(%q) = %v, want exactly %s days", s, w.Duration, n)
			}
		}
	})
}

// TestParseWindowLongest checks the longest windows in days: FuzzParseWindow
// found that 200000d wrapped around to a negative duration and was accepted.
func TestParseWindowLongest(t *testing.T) {
	tests := []struct {
		s    string
		want time.Duration // 0: refused
	}{
		{"106751d", 106751 * 24 * time.Hour},
		{"106752d", 0},
		{"200000d", 0},
		{"213504d", 0}, // wraps around to a positive duration
		{"2562047h", 2562047 * time.Hour},
		{"2562048h", 0},
	}
	for _, tt := range tests {
		t.Run(tt.s, func(t *testing.T) {
			w, err := larder.ParseWindow(tt.s)
			if tt.want == 0 {
				if err == nil {
					t.Fatalf("ParseWindow(%q) = %v, want an error", tt.s, w.Duration)
				}
				return
			}
			if err != nil || w.Duration != tt.want {
				t.Fatalf("ParseWindow(%q) = %v, %v; want %v", tt.s, w.Duration, err, tt.want)
			}
		})
	}
}

// TestParseLongInput checks that the messages of ParseKey and ParseWindow
// quote the start of a long input and say how long it was: FuzzParseKey
// found a 167-byte key quoted into a 513-byte message.
func TestParseLongInput(t *testing.T) {
	long := strings.Repeat("\xff", 1<<20)
	_, keyErr := larder.ParseKey(larder.TypeInt64, long)
	_, winErr := larder.ParseWindow(long + "d")
	runes := strings.Repeat("é", 40) // 80 bytes: cut between runes
	_, runeErr := larder.ParseKey(larder.TypeInt64, runes)
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"key", keyErr, `key "` + strings.Repeat(`\xff`, 64) + `"... (1048576 bytes) is not an int64`},
		{"window", winErr, `invalid window "` + strings.Repeat(`\xff`, 64) + `"... (1048577 bytes): write a positive number`},
		{"key of runes", runeErr, `key "` + strings.Repeat("é", 32) + `"... (80 bytes) is not an int64`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.err == nil || !strings.HasPrefix(tt.err.Error(), tt.want) {
				t.Fatalf("error = %v, want it to begin %s", tt.err, tt.want)
			}
			if len(tt.err.Error()) > maxParseMessage {
				t.Errorf("%d-byte message, want at most %d", len(tt.err.Error()), maxParseMessage)
			}
		})
	}
}

// TestFuzzTargetsListed checks that make fuzz runs every fuzz target of the
// module, and that docs/testing.md lists each.
func TestFuzzTargetsListed(t *testing.T) {
	makefile, err := os.ReadFile("Makefile")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("docs/testing.md")
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	if m := regexp.MustCompile(`(?m)^FUZZ_TARGETS :=((?:.*\\\n)*.*)$`).FindSubmatch(makefile); m != nil {
		listed = strings.Fields(strings.ReplaceAll(string(m[1]), "\\", ""))
	}
	target := regexp.MustCompile(`(?m)^func (Fuzz\w+)\(f \*testing\.F\)`)
	var found []string
	err = filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != "." && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "tools") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		pkg := "./" + filepath.ToSlash(filepath.Dir(path))
		if pkg == "./." {
			pkg = "."
		}
		for _, m := range target.FindAllSubmatch(src, -1) {
			found = append(found, pkg+":"+string(m[1]))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(found) == 0 {
		t.Fatal("no fuzz targets found")
	}
	slices.Sort(found)
	sortedListed := slices.Sorted(slices.Values(listed))
	if !slices.Equal(found, sortedListed) {
		t.Errorf("the Makefile's FUZZ_TARGETS are\n  %s\nthe module's fuzz targets\n  %s", strings.Join(sortedListed, " "), strings.Join(found, " "))
	}
	for _, f := range found {
		if name := f[strings.IndexByte(f, ':')+1:]; !strings.Contains(string(doc), "`"+name+"`") {
			t.Errorf("docs/testing.md does not list %s", name)
		}
	}
}
