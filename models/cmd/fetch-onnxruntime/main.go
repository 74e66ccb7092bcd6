// Command fetch-onnxruntime makes sure the ONNX Runtime shared library that
// package models loads is present, fetching it from the npm registry into the
// user's cache folder if needed, and prints its path.
//
// Usage:
//
//	go run ./models/cmd/fetch-onnxruntime
//
// If ONNXRUNTIME_LIB is set, nothing is fetched and its value is checked and
// printed instead. Progress goes to standard error; only the path goes to
// standard output, so scripts can use it:
//
//	export ONNXRUNTIME_LIB=$(go run ./models/cmd/fetch-onnxruntime)
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"

	"github.com/larder-dev/larder/models"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "fetch-onnxruntime:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		return fmt.Errorf("takes no arguments (got %q); set %s to use another library", args, models.LibraryEnv)
	}
	path, err := models.EnsureLibrary(ctx, stderr)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, path)
	return err
}
