package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/larder-dev/larder/models"
)

func (a *app) setupCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "setup",
		Short: "Fetch the ONNX Runtime library that rankers and prediction views need",
		Long: `setup fetches the ONNX Runtime shared library for this platform from the npm
registry (npm pack onnxruntime-node, then the library of linux/amd64,
linux/arm64 or darwin/arm64 from the tarball, checked against its
SHA-256), and caches it in the user's cache folder, where every larder
command finds it. It needs npm, once. With ONNXRUNTIME_LIB set, nothing is
fetched: that library is used. larder serve never downloads anything: run
setup before it (a container image or a deployment does it at build time).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			lib, err := models.EnsureLibrary(cmd.Context(), a.stderr)
			if err != nil {
				return err
			}
			rt, err := models.NewRuntime(lib)
			if err != nil {
				return fmt.Errorf("the library at %s does not load: %w", lib, err)
			}
			defer rt.Close()
			fmt.Fprintf(a.stdout, "ONNX Runtime %s at %s\n", rt.ORTVersion(), lib)
			return nil
		},
	}
}
