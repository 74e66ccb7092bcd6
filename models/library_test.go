//go:build cgo

package models

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestLibraryPath(t *testing.T) {
	existing := filepath.Join(t.TempDir(), "libonnxruntime.so")
	if err := os.WriteFile(existing, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A cache folder where the library has been fetched before.
	warmCache := t.TempDir()
	cached := filepath.Join(warmCache, "larder", "onnxruntime", ORTVersion, runtime.GOOS+"-"+runtime.GOARCH, "libonnxruntime.so.1")
	if err := os.MkdirAll(filepath.Dir(cached), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cached, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	coldCache := t.TempDir()

	tests := []struct {
		name     string
		env      string // ONNXRUNTIME_LIB
		cache    string // XDG_CACHE_HOME
		want     string
		notFound bool     // want ErrLibraryNotFound
		contains []string // substrings of the error
	}{
		{name: "override", env: existing, cache: coldCache, want: existing},
		{name: "override wins over cache", env: existing, cache: warmCache, want: existing},
		{name: "override missing", env: "/nonexistent/libonnxruntime.so", cache: warmCache,
			contains: []string{"ONNXRUNTIME_LIB=/nonexistent/libonnxruntime.so", "file does not exist", "unset it"}},
		{name: "override is a folder", env: coldCache, cache: warmCache,
			contains: []string{"ONNXRUNTIME_LIB=" + coldCache, "not a regular file"}},
		{name: "cached", cache: warmCache, want: cached},
		{name: "not fetched yet", cache: coldCache, notFound: true,
			contains: []string{"ONNX Runtime library not found at " + filepath.Join(coldCache, "larder", "onnxruntime", ORTVersion, runtime.GOOS+"-"+runtime.GOARCH), SetupCommand, "ONNXRUNTIME_LIB"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(LibraryEnv, tt.env)
			t.Setenv("XDG_CACHE_HOME", tt.cache)
			got, err := LibraryPath()
			if tt.contains == nil {
				if err != nil || got != tt.want {
					t.Fatalf("LibraryPath() = %q, %v; want %q", got, err, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("LibraryPath() = %q, want an error", got)
			}
			if errors.Is(err, ErrLibraryNotFound) != tt.notFound {
				t.Errorf("errors.Is(%v, ErrLibraryNotFound) = %v, want %v", err, !tt.notFound, tt.notFound)
			}
			for _, s := range tt.contains {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("LibraryPath error %q, want it to contain %q", err, s)
				}
			}
		})
	}
}

func TestEnsureLibraryDoesNotFetch(t *testing.T) {
	tests := []struct {
		name, env, path string
		want            string
	}{
		// With the override set, a missing file is an error, not a fetch.
		{name: "override missing", env: "/nonexistent/lib.so", path: os.Getenv("PATH"), want: "ONNXRUNTIME_LIB=/nonexistent/lib.so"},
		// Without npm, the error says how to get it.
		{name: "no npm", path: t.TempDir(), want: "npm not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(LibraryEnv, tt.env)
			t.Setenv("XDG_CACHE_HOME", t.TempDir())
			t.Setenv("PATH", tt.path)
			got, err := EnsureLibrary(context.Background(), nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("EnsureLibrary() = %q, %v; want an error containing %q", got, err, tt.want)
			}
		})
	}
}

// makeTarball returns a gzipped tar holding the given files.
func makeTarball(tb testing.TB, files map[string]string) []byte {
	tb.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for name, content := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg}); err != nil {
			tb.Fatal(err)
		}
		if _, err := io.WriteString(tw, content); err != nil {
			tb.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		tb.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// TestFetcher runs the download path against a fake npm that drops a
// prepared tarball, or fails.
func TestFetcher(t *testing.T) {
	const lib = "pretend this is an ELF shared library"
	sum := sha256.Sum256([]byte(lib))
	libSum := hex.EncodeToString(sum[:])
	tests := []struct {
		name    string
		tarball []byte // what npm pack leaves; nil: npm fails
		sha256  string
		wantErr string
	}{
		{name: "ok", sha256: libSum, tarball: makeTarball(t, map[string]string{
			"package/package.json": "{}", libMember: lib, "package/bin/napi-v6/linux/arm64/libonnxruntime.so.1": "arm",
		})},
		{name: "library missing from tarball", sha256: libSum,
			tarball: makeTarball(t, map[string]string{"package/package.json": "{}"}),
			wantErr: "onnxruntime-node-9.9.9.tgz has no " + libMember},
		{name: "checksum mismatch", sha256: strings.Repeat("0", 64),
			tarball: makeTarball(t, map[string]string{libMember: lib}),
			wantErr: "has SHA-256 " + libSum + ", want 000"},
		{name: "not gzip", sha256: libSum, tarball: []byte("plain text"), wantErr: "read onnxruntime-node-9.9.9.tgz"},
		{name: "npm fails", sha256: libSum, wantErr: "npm pack onnxruntime-node@9.9.9 failed: exit status 1\nnpm error 404 Not Found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			script := "#!/bin/sh\necho 'npm error 404 Not Found' >&2\nexit 1\n"
			if tt.tarball != nil {
				tgz := filepath.Join(dir, "source.tgz")
				if err := os.WriteFile(tgz, tt.tarball, 0o644); err != nil {
					t.Fatal(err)
				}
				script = "#!/bin/sh\n[ \"$1 $2\" = 'pack onnxruntime-node@9.9.9' ] || exit 2\ncp '" + tgz + "' onnxruntime-node-9.9.9.tgz\n"
			}
			npm := filepath.Join(dir, "npm")
			if err := os.WriteFile(npm, []byte(script), 0o755); err != nil {
				t.Fatal(err)
			}
			dest := filepath.Join(dir, "cache", "larder", "onnxruntime", "9.9.9", "libonnxruntime.so.1")
			var log bytes.Buffer
			f := fetcher{npm: npm, version: "9.9.9", member: libMember, sha256: tt.sha256, log: &log}
			err := f.fetch(context.Background(), dest)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("fetch = %v, want an error containing %q", err, tt.wantErr)
				}
				if _, err := os.Stat(dest); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("after a failed fetch, %s: %v; want it not to exist", dest, err)
				}
				if left, _ := filepath.Glob(filepath.Join(filepath.Dir(dest), ".*.tmp")); len(left) > 0 {
					t.Errorf("temporary files left behind: %v", left)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(dest)
			if err != nil || string(got) != lib {
				t.Fatalf("installed library = %q, %v; want %q", got, err, lib)
			}
			if !strings.Contains(log.String(), "installed at "+dest) {
				t.Errorf("log %q does not say where the library went", log.String())
			}
		})
	}
}

// TestLibFor picks each shipped platform's library from the npm package,
// and refuses the others with the list of those it ships.
func TestLibFor(t *testing.T) {
	for _, tc := range []struct{ goos, goarch, member string }{
		{"linux", "amd64", "package/bin/napi-v6/linux/x64/libonnxruntime.so.1"},
		{"linux", "arm64", "package/bin/napi-v6/linux/arm64/libonnxruntime.so.1"},
		{"darwin", "arm64", "package/bin/napi-v6/darwin/arm64/libonnxruntime.1.24.1.dylib"},
	} {
		l, err := libFor(tc.goos, tc.goarch)
		if err != nil || l.member != tc.member || len(l.sha256) != 64 || !strings.HasPrefix(l.name, "libonnxruntime.") {
			t.Errorf("%s/%s: %+v, %v; want %s", tc.goos, tc.goarch, l, err, tc.member)
		}
	}
	for _, p := range [][2]string{{"darwin", "amd64"}, {"windows", "amd64"}, {"linux", "386"}} {
		_, err := libFor(p[0], p[1])
		if err == nil || !strings.Contains(err.Error(), "only darwin/arm64, linux/amd64, linux/arm64") || !strings.Contains(err.Error(), LibraryEnv) {
			t.Errorf("%s/%s: %v, want a refusal listing the platforms and naming %s", p[0], p[1], err, LibraryEnv)
		}
	}
}

// TestLibraryPathAdoptsLegacy checks that the library fetched by a release
// before the platform folders is moved into this platform's folder when it
// is this platform's, and left where it is when it is not.
func TestLibraryPathAdoptsLegacy(t *testing.T) {
	t.Setenv(LibraryEnv, "")
	saved := libSHA256
	t.Cleanup(func() { libSHA256 = saved })
	sum := sha256.Sum256([]byte("the library"))
	libSHA256 = hex.EncodeToString(sum[:])

	for _, tt := range []struct {
		name, content string
		adopted       bool
	}{
		{"this platform's library", "the library", true},
		{"another file", "something else", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cache := t.TempDir()
			t.Setenv("XDG_CACHE_HOME", cache)
			legacy := filepath.Join(cache, "larder", "onnxruntime", ORTVersion, libName)
			if err := os.MkdirAll(filepath.Dir(legacy), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(legacy, []byte(tt.content), 0o644); err != nil {
				t.Fatal(err)
			}
			want := filepath.Join(cache, "larder", "onnxruntime", ORTVersion, runtime.GOOS+"-"+runtime.GOARCH, libName)
			got, err := LibraryPath()
			if !tt.adopted {
				if !errors.Is(err, ErrLibraryNotFound) {
					t.Fatalf("LibraryPath() = %q, %v; want ErrLibraryNotFound", got, err)
				}
				if _, err := os.Stat(legacy); err != nil {
					t.Errorf("the other file was moved: %v", err)
				}
				return
			}
			if err != nil || got != want {
				t.Fatalf("LibraryPath() = %q, %v; want %q", got, err, want)
			}
			if b, err := os.ReadFile(want); err != nil || string(b) != tt.content {
				t.Errorf("%s holds %q, %v", want, b, err)
			}
			if _, err := os.Stat(legacy); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("the legacy library is still at %s: %v", legacy, err)
			}
		})
	}
}
