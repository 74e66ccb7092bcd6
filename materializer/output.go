package materializer

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/larder-dev/larder"
)

// The outputs of an export and of a scoring job follow the same rules: an
// output that is a symbolic link is written through, to the file the link
// leads to (see resolveOutput); that file must be one a file can be renamed
// over (checkOutput), and not a file the job or a view reads
// (checkNotAnInput).

// maxOutputLinks is the number of symbolic links resolveOutput follows
// before it gives up on a loop.
const maxOutputLinks = 40

// resolveOutput returns the file the output path names: path itself, or,
// when path is a symbolic link, the file at the end of its links, there or
// not yet (a dangling link names the file the output creates). An output is
// written to that file, in its folder, and the links are left as they are,
// as a shell's redirection writes through a link: a link an operator made
// to point at the current training set keeps pointing at it. It returns an
// error when the links loop or cannot be read, or lead elsewhere than
// where the system's own resolution leads.
func resolveOutput(path string) (string, error) {
	there, statErr := os.Stat(path)
	if statErr == nil && !there.Mode().IsRegular() {
		// A folder, a pipe or a device, as the system sees it through the
		// links: checkOutput refuses it. Some links lead there only as the
		// kernel reads them (/dev/stdout, a link to /proc/self/fd/1, which
		// reads "pipe:[NNN]" for a pipe).
		return path, nil
	}
	file, err := followLinks(path)
	if err != nil || statErr != nil {
		// Not there (a dangling link, a missing file): nothing to
		// compare the links with.
		return file, err
	}
	if same, err := samePath(path, file); err != nil || !same {
		return "", fmt.Errorf("the output %s is a link that leads to %s as read, but elsewhere as the system follows it: name the file itself", path, file)
	}
	return file, nil
}

// followLinks returns the file at the end of the symbolic links from path,
// there or not, each link read as its text says (a relative one from the
// folder it is in), and an error when they loop or cannot be read.
func followLinks(path string) (string, error) {
	file := path
	for range maxOutputLinks {
		fi, err := os.Lstat(file)
		if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
			// Not there, or not a link: checkOutput says what is wrong
			// with it, if anything.
			return file, nil
		}
		target, err := os.Readlink(file)
		if err != nil {
			return "", fmt.Errorf("the output %s: %w", path, err)
		}
		if !filepath.IsAbs(target) {
			// A relative link is read from the folder it is in, once
			// that folder's own links are followed: ".." leads out of
			// where they lead, not out of the path as written.
			dir, err := filepath.EvalSymlinks(filepath.Dir(file))
			if err != nil {
				return "", fmt.Errorf("the output %s: %w", path, err)
			}
			target = filepath.Join(dir, target)
		}
		file = target
	}
	return "", fmt.Errorf("the output %s: more than %d symbolic links, or a loop of them: name a file", path, maxOutputLinks)
}

// checkNotAnInput returns an invalid-argument error when the output file
// (resolved: see resolveOutput) is a file its job reads, or would read the
// next time it runs: one of in's files, a file in's folder or glob (inPath)
// would read once written, a file of a source of the project, there or
// to be read once written, the project file, or the model of a ranker or
// a prediction view. In the error, output is the output as named,
// files names in's files ("the spine's files"), folder its folder or glob
// ("the spine's folder or glob") and wrote what the job writes ("the
// training set"). It returns nil when the output is none of those.
func (m *Materializer) checkNotAnInput(output, file string, in *dataset, inPath, files, folder, wrote string) error {
	name := output
	if file != output {
		name = fmt.Sprintf("%s (a link to %s)", output, file)
	}
	for _, f := range in.files {
		if same, err := samePath(f.path, file); err == nil && same {
			return larder.Invalidf("the output %s is one of %s: write %s elsewhere", name, files, wrote)
		}
	}
	if readsFile(inPath, file) {
		return larder.Invalidf("the output %s is among %s, as %s would read it next time: write %s elsewhere", name, files, folder, wrote)
	}
	for _, src := range m.project.Sources {
		if readsFile(m.project.Path(src.Path), file) {
			return larder.Invalidf("the output %s is a file of source %q (%s), which the views read: write %s elsewhere", name, src.Name, src.Path, wrote)
		}
	}
	is := func(path string) bool {
		same, err := samePath(path, file)
		return err == nil && same
	}
	if p := m.project.File; p != "" && is(p) {
		return larder.Invalidf("the output %s is the project file %s: write %s elsewhere", name, p, wrote)
	}
	for _, rk := range m.project.Rankers {
		if is(m.project.Path(rk.Model)) {
			return larder.Invalidf("the output %s is the model of ranker %q (%s): write %s elsewhere", name, rk.Name, rk.Model, wrote)
		}
	}
	for _, v := range m.project.Views {
		if v.Prediction != nil && is(m.project.Path(v.Prediction.Model)) {
			return larder.Invalidf("the output %s is the model of prediction view %q (%s): write %s elsewhere", name, v.Name, v.Prediction.Model, wrote)
		}
	}
	return nil
}

// checkOutput checks that path can be written: its folder exists, and it
// is not a folder itself, nor anything but a file (a device, a named pipe,
// such as /dev/stdout can be), which the file renamed over it would
// replace.
func checkOutput(path string) error {
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	switch {
	case err != nil && os.IsNotExist(err):
		return fmt.Errorf("the output's folder %s does not exist: create it, or write the output elsewhere", dir)
	case err != nil:
		return fmt.Errorf("output: %w", err)
	case !fi.IsDir():
		return fmt.Errorf("the output's folder %s is not a folder", dir)
	}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return fmt.Errorf("the output %s is a folder: name a file", path)
	} else if err == nil && !fi.Mode().IsRegular() {
		what := "something else"
		switch m := fi.Mode(); {
		case m&os.ModeNamedPipe != 0:
			what = "a named pipe"
		case m&os.ModeDevice != 0:
			what = "a device"
		case m&os.ModeSocket != 0:
			what = "a socket"
		}
		return fmt.Errorf("the output %s is not a regular file but %s, which the file written beside it and renamed over it would replace: name a file", path, what)
	}
	return nil
}

// samePath reports whether paths a and b name the same file.
func samePath(a, b string) (bool, error) {
	fa, err := os.Stat(a)
	if err != nil {
		return false, err
	}
	fb, err := os.Stat(b)
	if err != nil {
		return false, err
	}
	return os.SameFile(fa, fb), nil
}

// readsFile reports whether the path of a source or a spine (a file, a
// folder or a glob, read as resolvePaths reads them) names the file out, or
// would name it once it is written.
func readsFile(path, out string) bool {
	inFolder := func(dir string) bool {
		name := filepath.Base(out)
		if !strings.HasSuffix(name, ".parquet") || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") {
			return false
		}
		same, err := samePath(dir, filepath.Dir(out))
		return err == nil && same
	}
	fi, err := os.Stat(path)
	if err != nil && strings.ContainsAny(path, "*?[") {
		if ok, _ := filepath.Match(path, out); ok {
			return true
		}
		// out, not there yet, is matched by its name in its folder, which
		// is there: the folders the glob's folder names are compared with
		// it as files, so that a link or another spelling of the path
		// leads to the same folder.
		dirPat, namePat := filepath.Split(path)
		if ok, _ := filepath.Match(namePat, filepath.Base(out)); ok {
			dirs, _ := filepath.Glob(filepath.Clean(dirPat))
			for _, d := range dirs {
				if same, err := samePath(d, filepath.Dir(out)); err == nil && same {
					return true
				}
			}
		}
		// A folder the glob matches stands for the files inside it.
		matches, _ := filepath.Glob(path)
		for _, m := range matches {
			if fi, err := os.Stat(m); err == nil && fi.IsDir() && inFolder(m) {
				return true
			}
		}
		return false
	}
	if err == nil && fi.IsDir() {
		return inFolder(path)
	}
	if filepath.Clean(path) == filepath.Clean(out) {
		return true
	}
	same, err := samePath(path, out)
	return err == nil && same
}
