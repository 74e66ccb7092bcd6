package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
)

// grpcLogger passes what grpc-go logs by itself (its warnings and errors:
// a transport that failed, a balancer that changed) to the command's
// logger, so that they follow --log-format and --log-level instead of
// going to standard error in grpc-go's own format. Its information lines
// are dropped, as grpc-go's default drops them. main sets it before any
// gRPC code runs; the logger is stored once the flags are read, and lines
// before then are written to standard error as they come.
//
// The commands that only call a server (rank, push, reload) report a failed
// call themselves, with what to do; grpc-go's warning of the same failure
// ("addrConn.createTransport failed to connect") would only come first and
// say less, so for them its warnings are debug records (demote).
type grpcLogger struct {
	logger atomic.Pointer[slog.Logger]
	demote atomic.Bool
}

// warn logs one of grpc-go's warnings.
func (g *grpcLogger) warn(msg string) {
	level := slog.LevelWarn
	if g.demote.Load() {
		level = slog.LevelDebug
	}
	g.log(level, msg)
}

func (g *grpcLogger) log(level slog.Level, msg string) {
	msg = strings.TrimSuffix(msg, "\n")
	if l := g.logger.Load(); l != nil {
		l.Log(context.Background(), level, msg, "from", "grpc")
		return
	}
	fmt.Fprintf(os.Stderr, "grpc: %s: %s\n", level, msg)
}

func (*grpcLogger) Info(...any)          {}
func (*grpcLogger) Infoln(...any)        {}
func (*grpcLogger) Infof(string, ...any) {}
func (*grpcLogger) V(int) bool           { return false }

func (g *grpcLogger) Warning(args ...any)   { g.warn(fmt.Sprint(args...)) }
func (g *grpcLogger) Warningln(args ...any) { g.warn(fmt.Sprintln(args...)) }
func (g *grpcLogger) Warningf(format string, args ...any) {
	g.warn(fmt.Sprintf(format, args...))
}
func (g *grpcLogger) Error(args ...any)   { g.log(slog.LevelError, fmt.Sprint(args...)) }
func (g *grpcLogger) Errorln(args ...any) { g.log(slog.LevelError, fmt.Sprintln(args...)) }
func (g *grpcLogger) Errorf(format string, args ...any) {
	g.log(slog.LevelError, fmt.Sprintf(format, args...))
}
func (g *grpcLogger) Fatal(args ...any)   { g.log(slog.LevelError, fmt.Sprint(args...)); os.Exit(1) }
func (g *grpcLogger) Fatalln(args ...any) { g.log(slog.LevelError, fmt.Sprintln(args...)); os.Exit(1) }
func (g *grpcLogger) Fatalf(format string, args ...any) {
	g.log(slog.LevelError, fmt.Sprintf(format, args...))
	os.Exit(1)
}
