package models

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"github.com/larder-dev/larder/models/internal/ort"
)

// Supported reports whether this build can load ONNX Runtime: false in a
// build without cgo (CGO_ENABLED=0), where every function that would load
// it returns an error saying so.
const Supported = ort.Supported

// ORTVersion is the ONNX Runtime release EnsureLibrary fetches.
// onnxruntime_go v1.27.0 asks the library for C API version 24, which ONNX
// Runtime 1.24 and later provide.
const ORTVersion = "1.24.1"

// LibraryEnv names the environment variable that, when set, points at the
// ONNX Runtime shared library to use instead of the fetched one.
const LibraryEnv = "ONNXRUNTIME_LIB"

// FetchCommand is the command of a checkout that fetches the library, as
// make setup-onnxruntime runs it; SetupCommand is larder's own, which error
// messages tell the user to run.
const (
	FetchCommand = "go run ./models/cmd/fetch-onnxruntime"
	SetupCommand = "larder setup"
)

// ErrLibraryNotFound is returned (wrapped) by LibraryPath when the fetched
// library is not in the cache folder yet and LibraryEnv is not set.
var ErrLibraryNotFound = errors.New("ONNX Runtime library not found")

const npmPackage = "onnxruntime-node"

// platformLib is the library of one platform inside the npm tarball: its
// path there, the file name it is cached under, and its SHA-256, which pins
// what onnxruntime-node 1.24.1 ships so that a changed or corrupted
// download is refused rather than loaded.
type platformLib struct {
	member, name, sha256 string
}

// platformLibs are the platforms whose library onnxruntime-node ships, by
// GOOS/GOARCH.
var platformLibs = map[string]platformLib{
	"linux/amd64":  {"package/bin/napi-v6/linux/x64/libonnxruntime.so.1", "libonnxruntime.so.1", "53ef1ac028dd1b05554b8da28d9159eb3876f99868193d2aaa6e67f0243c23d4"},
	"linux/arm64":  {"package/bin/napi-v6/linux/arm64/libonnxruntime.so.1", "libonnxruntime.so.1", "7954e8bdedb497f830c6a679e818d98399b7f4d81ade1126c3e0be74d28111ab"},
	"darwin/arm64": {"package/bin/napi-v6/darwin/arm64/libonnxruntime.1.24.1.dylib", "libonnxruntime.1.24.1.dylib", "7ad6507ad64d3b02aebfae6380c024ff188939cd8a7a493ec18028e034c8275c"},
}

// libFor returns the library of platform goos/goarch, or an error saying
// which platforms the package ships and how to use another library.
func libFor(goos, goarch string) (platformLib, error) {
	if l, ok := platformLibs[goos+"/"+goarch]; ok {
		return l, nil
	}
	known := make([]string, 0, len(platformLibs))
	for p := range platformLibs {
		known = append(known, p)
	}
	slices.Sort(known)
	return platformLib{}, fmt.Errorf("models: %s %s ships no ONNX Runtime library for %s/%s (only %s); install ONNX Runtime >= 1.24 and set %s to its shared library",
		npmPackage, ORTVersion, goos, goarch, strings.Join(known, ", "), LibraryEnv)
}

// libMember, libName and libSHA256 are this platform's, or linux/amd64's
// on a platform the package does not ship (locateLibrary refuses it).
var libMember, libName, libSHA256 = func() (string, string, string) {
	l, err := libFor(runtime.GOOS, runtime.GOARCH)
	if err != nil {
		l = platformLibs["linux/amd64"]
	}
	return l.member, l.name, l.sha256
}()

// LibraryPath returns the path of the ONNX Runtime shared library without
// downloading anything.
//
// If LibraryEnv is set, its value is returned when the file exists, and an
// error naming the variable is returned when it does not. Otherwise the
// library is looked up in the user's cache folder
// (os.UserCacheDir()/larder/onnxruntime/<ORTVersion>/<GOOS>-<GOARCH>/, as
// libonnxruntime.so.1 on Linux: one folder per platform, so that a cache
// folder shared by machines of two architectures serves each its own); if
// it is not there, the error wraps ErrLibraryNotFound and says how to fetch
// it. On a platform whose library onnxruntime-node does not ship (see
// platformLibs) an error says to set LibraryEnv.
func LibraryPath() (string, error) {
	path, _, err := locateLibrary()
	return path, err
}

// EnsureLibrary returns the path of the ONNX Runtime shared library,
// fetching it first if it is not in the user's cache folder.
//
// The library comes from the npm registry: it runs `npm pack
// onnxruntime-node@<ORTVersion>` in a temporary folder, extracts the
// library of this platform from the tarball, checks its SHA-256, and
// writes it atomically into the cache folder, where later calls (and fresh
// clones of the project) find it. Progress is written to log; log may be nil.
//
// If LibraryEnv is set, nothing is fetched: the result is LibraryPath's. An
// error is returned if npm is not installed or fails (with its output), if
// the tarball lacks the library, if the checksum does not match, or if ctx
// is done first.
func EnsureLibrary(ctx context.Context, log io.Writer) (string, error) {
	path, fetchable, err := locateLibrary()
	if err == nil || !fetchable {
		return path, err
	}
	if log == nil {
		log = io.Discard
	}
	f := fetcher{npm: "npm", version: ORTVersion, member: libMember, sha256: libSHA256, log: log}
	if err := f.fetch(ctx, path); err != nil {
		return "", err
	}
	return path, nil
}

// locateLibrary returns the library's path. When the library is missing but
// EnsureLibrary may fetch it, it returns the path to fetch it to, fetchable
// true, and an error wrapping ErrLibraryNotFound.
func locateLibrary() (path string, fetchable bool, err error) {
	if !ort.Supported {
		return "", false, fmt.Errorf("models: %w", ort.Err())
	}
	if env := os.Getenv(LibraryEnv); env != "" {
		if err := checkFile(env); err != nil {
			return "", false, fmt.Errorf("models: %s=%s: %w; point it at an ONNX Runtime >= 1.24 libonnxruntime.so, or unset it to use the library fetched by %q", LibraryEnv, env, err, SetupCommand)
		}
		return env, false, nil
	}
	if _, err := libFor(runtime.GOOS, runtime.GOARCH); err != nil {
		return "", false, err
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", false, fmt.Errorf("models: find the user cache folder for the ONNX Runtime library: %w; set %s instead", err, LibraryEnv)
	}
	path = filepath.Join(cache, "larder", "onnxruntime", ORTVersion, runtime.GOOS+"-"+runtime.GOARCH, libName)
	err = checkFile(path)
	if errors.Is(err, fs.ErrNotExist) && adoptLegacy(filepath.Join(cache, "larder", "onnxruntime", ORTVersion, libName), path) {
		err = nil
	}
	switch {
	case err == nil:
		return path, false, nil
	case errors.Is(err, fs.ErrNotExist):
		return path, true, fmt.Errorf("models: %w at %s; run %q (in a checkout: make setup-onnxruntime), or set %s", ErrLibraryNotFound, path, SetupCommand, LibraryEnv)
	default:
		return "", false, fmt.Errorf("models: ONNX Runtime library %s: %w", path, err)
	}
}

// adoptLegacy moves the library that releases before the platform folders
// fetched to legacy (the linux/amd64 one, the only one they fetched) to
// path, and reports whether it did: only when its SHA-256 is the one this
// platform's library has, so that a host that upgrades larder keeps the
// library it has, as serve, which fetches nothing, needs it to.
func adoptLegacy(legacy, path string) bool {
	f, err := os.Open(legacy)
	if err != nil {
		return false
	}
	h := sha256.New()
	_, err = io.Copy(h, f)
	f.Close()
	if err != nil || hex.EncodeToString(h.Sum(nil)) != libSHA256 {
		return false
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return false
	}
	return os.Rename(legacy, path) == nil
}

// checkFile returns nil if path is a regular file (after symlinks).
func checkFile(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fs.ErrNotExist // its message says "file does not exist"
		}
		return err
	}
	if !fi.Mode().IsRegular() {
		return errors.New("not a regular file")
	}
	return nil
}

// fetcher downloads the library with npm; its fields let tests substitute a
// fake npm and a fake tarball.
type fetcher struct {
	npm     string // npm command name or path
	version string // onnxruntime-node version
	member  string // path of the library inside the tarball
	sha256  string // expected hex SHA-256 of the library
	log     io.Writer
}

// fetch downloads the library and installs it at dest atomically: dest
// either does not exist or holds the whole, checked library.
func (f fetcher) fetch(ctx context.Context, dest string) error {
	npm, err := exec.LookPath(f.npm)
	if err != nil {
		return fmt.Errorf("models: fetch ONNX Runtime %s: npm not found (%w); install Node.js and npm (Debian: apt-get install npm), or download ONNX Runtime >= 1.24 yourself and set %s", f.version, err, LibraryEnv)
	}
	work, err := os.MkdirTemp("", "larder-onnxruntime-*")
	if err != nil {
		return fmt.Errorf("models: fetch ONNX Runtime: %w", err)
	}
	defer os.RemoveAll(work)

	pkg := npmPackage + "@" + f.version
	fmt.Fprintf(f.log, "fetching %s from the npm registry (npm pack)\n", pkg)
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, npm, "pack", pkg)
	cmd.Dir = work
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.Env = append(os.Environ(), "npm_config_update_notifier=false", "npm_config_fund=false", "npm_config_audit=false")
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("models: fetch ONNX Runtime: %w", ctx.Err())
		}
		return fmt.Errorf("models: fetch ONNX Runtime: npm pack %s failed: %w\n%s", pkg, err, strings.TrimSpace(out.String()))
	}
	tarballs, _ := filepath.Glob(filepath.Join(work, "*.tgz"))
	if len(tarballs) != 1 {
		return fmt.Errorf("models: fetch ONNX Runtime: npm pack %s left %d tarballs, want 1; npm said:\n%s", pkg, len(tarballs), strings.TrimSpace(out.String()))
	}
	if err := f.install(tarballs[0], dest); err != nil {
		return fmt.Errorf("models: fetch ONNX Runtime: %w", err)
	}
	fmt.Fprintf(f.log, "ONNX Runtime %s installed at %s\n", f.version, dest)
	return nil
}

// install extracts f.member from the gzipped tarball at tgz, checks its
// SHA-256 and renames it into place at dest.
func (f fetcher) install(tgz, dest string) error {
	file, err := os.Open(tgz)
	if err != nil {
		return err
	}
	defer file.Close()
	gz, err := gzip.NewReader(file)
	if err != nil {
		return fmt.Errorf("read %s: %w", filepath.Base(tgz), err)
	}
	defer gz.Close()
	tr := tar.NewReader(gz)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return fmt.Errorf("%s has no %s", filepath.Base(tgz), f.member)
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", filepath.Base(tgz), err)
		}
		if hdr.Name == f.member && hdr.Typeflag == tar.TypeReg {
			return f.writeChecked(tr, dest)
		}
	}
}

// writeChecked copies r to a temporary file next to dest and renames it to
// dest if its SHA-256 is f.sha256.
func (f fetcher) writeChecked(r io.Reader, dest string) (err error) {
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(dest), "."+filepath.Base(dest)+".*.tmp")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(tmp, h), r); err != nil {
		return fmt.Errorf("extract %s: %w", f.member, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != f.sha256 {
		return fmt.Errorf("%s has SHA-256 %s, want %s; refusing to install it", f.member, got, f.sha256)
	}
	if err := tmp.Chmod(0o755); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dest)
}
