package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/larder-dev/larder/store"
)

// The server bench measures runs as a process of its own, the bench
// binary started again with --serve-child: the server of `larder serve`,
// plus the composed floors' methods. So the server's CPU time per request
// comes from its own process accounting, apart from the callers', and the
// callers do not take CPU from the server's process as they would inside
// it.

// selfEnv is added to the environment of the server process bench starts.
// Tests set it so that their binary runs as larder.
var selfEnv []string

// servingPrefix starts the line the server process prints on standard
// output once it serves, followed by its address.
const servingPrefix = "serving on "

// serverChild is the server process of a bench.
type serverChild struct {
	cmd   *exec.Cmd
	addr  string
	stdin io.WriteCloser
	done  chan error
}

// startServerChild starts the server process of the bench world in dir, on
// the Redis at addr, with the options o, and waits until it serves.
func (a *app) startServerChild(ctx context.Context, dir, addr string, o benchOptions) (*serverChild, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("bench: find the larder binary to start the server: %w", err)
	}
	args := []string{"--redis", addr, "--log-level", "warn", "bench", "--serve-child", dir,
		"--users", strconv.Itoa(o.users), "--items", strconv.Itoa(o.items)}
	if o.heavy {
		args = append(args, "--heavy")
	}
	if o.batching {
		args = append(args, "--batching",
			"--batch-max-delay", o.batch.MaxDelay.String(),
			"--batch-max-rows", strconv.Itoa(o.batch.MaxRows),
			"--batch-max-queue", strconv.Itoa(o.batch.MaxQueue))
	}
	cmd := exec.Command(self, args...)
	cmd.Env = append(os.Environ(), selfEnv...)
	cmd.Stderr = a.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start the server process: %w", err)
	}
	c := &serverChild{cmd: cmd, stdin: stdin, done: make(chan error, 1)}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if addr, ok := strings.CutPrefix(sc.Text(), servingPrefix); ok {
				ready <- addr
			}
		}
		close(ready)
		c.done <- cmd.Wait()
	}()
	select {
	case addr, ok := <-ready:
		if ok {
			c.addr = addr
			return c, nil
		}
		err := <-c.done
		return nil, fmt.Errorf("bench: the server process ended before serving: %v", err)
	case <-ctx.Done():
		c.stop()
		return nil, ctx.Err()
	}
}

// pid returns the server process's id.
func (c *serverChild) pid() int { return c.cmd.Process.Pid }

// stop asks the server process to end, by closing its standard input, and
// waits for it; past 10 seconds it kills it.
func (c *serverChild) stop() {
	_ = c.stdin.Close()
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// runBenchServer is the server process of a bench: it serves the bench
// world that the parent wrote into Redis and dir, with the composed floors,
// prints its address, and serves until its standard input closes.
func (a *app) runBenchServer(ctx context.Context, o benchOptions, dir string) error {
	if a.redisAddr == "" {
		return errors.New("--serve-child needs --redis")
	}
	p, err := benchProjectDef(dir, a.redisAddr, o)
	if err != nil {
		return err
	}
	client, err := store.Connect(p.Redis)
	if err != nil {
		return err
	}
	w := &benchWorld{project: p, dir: dir, users: o.users, items: o.items,
		backend: &backend{client: client, store: store.New(client, benchProject, store.Options{Logger: a.logger, Now: a.now})}}
	defer w.backend.Close()
	if w.raw, err = store.Connect(p.Redis); err != nil {
		return err
	}
	defer w.raw.Close()
	if w.userRows, err = w.liveBuckets(ctx, benchUserView, o.users); err != nil {
		return err
	}
	if w.itemRows, err = w.liveBuckets(ctx, benchItemView, o.items); err != nil {
		return err
	}
	srv, err := a.startServer(ctx, p, w.backend, "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer srv.close()
	w.model = srv.svc.Models()[benchRanker]
	w.profile = &childProfile{}
	srv.grpc.Server.RegisterService(w.floorMethods(), nil)

	serveCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	go func() {
		// The parent closes our standard input to stop us.
		_, _ = io.Copy(io.Discard, a.stdin)
		stop()
	}()
	served := make(chan error, 1)
	go func() { served <- srv.wait(serveCtx, 5*time.Second) }()
	fmt.Fprintln(a.stdout, servingPrefix+srv.addr)
	err = <-served
	w.profile.stop()
	return err
}

// childProfile is a CPU profile of the server process, started and stopped
// by the parent through the floor service, for --cpuprofile.
type childProfile struct {
	mu sync.Mutex
	f  *os.File
}

func (p *childProfile) start(path string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.f != nil {
		return errors.New("a profile is already being written")
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return err
	}
	p.f = f
	return nil
}

func (p *childProfile) stop() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.f == nil {
		return nil
	}
	pprof.StopCPUProfile()
	err := p.f.Close()
	p.f = nil
	return err
}

// profileStart and profileStop are the floor service's methods that start
// and stop the server process's CPU profile.
func (w *benchWorld) profileStart(_ context.Context, in *wrapperspb.StringValue) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, w.profile.start(in.GetValue())
}

func (w *benchWorld) profileStop(context.Context, *emptypb.Empty) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, w.profile.stop()
}
