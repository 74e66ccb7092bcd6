package bench

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

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/server"
	"github.com/larder-dev/larder/store"
)

// The server bench measures runs as a process of its own, the larder
// binary started again with --serve-child (Options.Binary, ServerArgs): the server of `larder serve`,
// plus the composed floors' methods. So the server's CPU time per request
// comes from its own process accounting, apart from the callers', and the
// callers do not take CPU from the server's process as they would inside
// it.

// ServingPrefix starts the line the server process prints on standard
// output once it serves, followed by its address.
const ServingPrefix = "serving on "

// serverChild is the server process of a bench.
type serverChild struct {
	cmd   *exec.Cmd
	addr  string
	stdin io.WriteCloser
	done  chan error
}

// ServerArgs returns the arguments of the larder binary that make it the
// server process of a bench world in dir, on the Redis at addr, with the
// options o (those that shape the world).
func ServerArgs(dir, addr string, o Options) []string {
	args := []string{"--redis", addr, "--log-level", "warn", "bench", "--serve-child", dir,
		"--users", strconv.Itoa(o.Users), "--items", strconv.Itoa(o.Items)}
	if o.Heavy {
		args = append(args, "--heavy")
	}
	if o.Batching {
		args = append(args, "--batching",
			"--batch-max-delay", o.Batch.MaxDelay.String(),
			"--batch-max-rows", strconv.Itoa(o.Batch.MaxRows),
			"--batch-max-queue", strconv.Itoa(o.Batch.MaxQueue))
	}
	return args
}

// startServerChild starts the server process of the bench world in dir, on
// the Redis at addr, with the options o, and waits until it serves.
func startServerChild(ctx context.Context, dir, addr string, o Options) (*serverChild, error) {
	bin := o.Binary
	if bin == "" {
		var err error
		if bin, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("bench: find the larder binary to start the server: %w", err)
		}
	}
	cmd := exec.Command(bin, ServerArgs(dir, addr, o)...)
	cmd.Env = append(os.Environ(), o.Env...)
	cmd.Stderr = o.Stderr
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
			if addr, ok := strings.CutPrefix(sc.Text(), ServingPrefix); ok {
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

// ServerWorld is the bench world as the server process sees it: the
// synthetic project, already written into Redis by the bench process, and
// the composed floors' methods to serve next to larder's.
type ServerWorld struct {
	// Project is the synthetic project; Client and Store reach its Redis,
	// for the server to serve from. Closing them is the caller's.
	Project *larder.Project
	Client  redis.UniversalClient
	Store   *store.Store
	w       *benchWorld
}

// NewServerWorld opens the bench world in dir on the Redis at o.Redis, with
// the options that shaped it (see ServerArgs).
func NewServerWorld(ctx context.Context, o Options, dir string) (*ServerWorld, error) {
	if o.Redis == "" {
		return nil, errors.New("--serve-child needs --redis")
	}
	o.setDefaults()
	p, err := benchProjectDef(dir, o.Redis, o)
	if err != nil {
		return nil, err
	}
	client, err := store.Connect(p.Redis)
	if err != nil {
		return nil, err
	}
	w := &benchWorld{project: p, dir: dir, users: o.Users, items: o.Items, client: client,
		store: store.New(client, benchProject, store.Options{Logger: o.Logger, Now: o.Now}), profile: &childProfile{}}
	sw := &ServerWorld{Project: p, Client: client, Store: w.store, w: w}
	if w.raw, err = store.Connect(p.Redis); err != nil {
		return sw, err
	}
	if w.userRows, err = w.liveBuckets(ctx, benchUserView, o.Users); err != nil {
		return sw, err
	}
	if w.itemRows, err = w.liveBuckets(ctx, benchItemView, o.Items); err != nil {
		return sw, err
	}
	return sw, nil
}

// FloorService returns the composed floors' methods, and those that start
// and stop the server process's CPU profile, with model the server's model
// of the bench ranker.
func (sw *ServerWorld) FloorService(model server.Model) *grpc.ServiceDesc {
	sw.w.model = model
	return sw.w.floorMethods()
}

// Close stops a CPU profile being written and closes the floors' own Redis
// connection.
func (sw *ServerWorld) Close() error {
	err := sw.w.profile.stop()
	if sw.w.raw != nil {
		_ = sw.w.raw.Close()
	}
	return err
}

// Ranker is the name of the bench project's ranker.
const Ranker = benchRanker

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
