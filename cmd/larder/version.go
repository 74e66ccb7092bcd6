package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/larder-dev/larder/models"
)

// buildCommit is the commit larder was built from, set by `make build` and
// `make install` (-ldflags -X); empty otherwise, when the build info's VCS
// stamp is used instead.
var buildCommit string

func (a *app) versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print larder's version, its commit, the Go it was built with and the ONNX Runtime it finds",
		Long: `version prints the module version of this larder binary, the commit it was
built from (with "modified" when the working tree had changes), the Go
version and platform it was built for, and the ONNX Runtime library it would
load: its path and the version it reports, or why none is found. It never
downloads anything.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := a.stdout
			version, commit := "(devel)", "unknown"
			if bi, ok := debug.ReadBuildInfo(); ok {
				if bi.Main.Version != "" {
					version = bi.Main.Version
				}
				var rev, when, modified string
				for _, s := range bi.Settings {
					switch s.Key {
					case "vcs.revision":
						rev = s.Value
					case "vcs.time":
						when = s.Value
					case "vcs.modified":
						if s.Value == "true" {
							modified = ", modified"
						}
					}
				}
				if rev != "" {
					commit = fmt.Sprintf("%s (%s%s)", rev, when, modified)
				}
			}
			if buildCommit != "" {
				commit = buildCommit
			}
			fmt.Fprintf(out, "larder %s\n", version)
			fmt.Fprintf(out, "commit %s\n", commit)
			fmt.Fprintf(out, "go %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
			if !models.Supported {
				fmt.Fprintln(out, "onnxruntime cannot be loaded: this larder was built without cgo (CGO_ENABLED=0)")
				return nil
			}
			lib, err := models.LibraryPath()
			if err != nil {
				fmt.Fprintf(out, "onnxruntime not found: %v\n", err)
				return nil
			}
			rt, err := models.NewRuntime(lib)
			if err != nil {
				fmt.Fprintf(out, "onnxruntime %s: cannot be loaded: %v\n", lib, err)
				return nil
			}
			defer rt.Close()
			fmt.Fprintf(out, "onnxruntime %s (%s)\n", rt.ORTVersion(), lib)
			return nil
		},
	}
}
