// Package redistest starts real redis-server processes for tests.
//
// Start runs a fresh redis-server on a free 127.0.0.1 port, with persistence
// off (--save "" --appendonly no) and its own temporary folder, waits until it
// answers PING and registers a cleanup that stops it and closes its clients.
// Every test that calls Start gets its own server, so tests never share data
// and never touch the machine's own Redis on 6379. StartCluster starts a
// Redis Cluster of such servers, for tests of cluster routing. A Server can
// be stopped and restarted (Redis down), or paused and resumed (Redis
// stalled: connected, but silent).
//
// Outages and failover have their own helpers. A Server can be stopped
// (Stop, SIGTERM), killed as a crash would (Kill, SIGKILL), stalled (Pause
// and Resume, SIGSTOP and SIGCONT) and started again on its address
// (Restart). Two topologies fail over by themselves:
//
//   - StartClusterWithReplicas starts a Redis Cluster whose masters each
//     have replicas, with a one-second cluster-node-timeout. KillMasterOf
//     kills the master that serves a key; WaitHealthy waits until a replica
//     has taken over its slots and every node reports cluster_state:ok,
//     about two to three seconds later.
//   - StartSentinel starts a master, a replica and three Sentinels (quorum
//     2, down-after-milliseconds 1000). KillMaster kills the master;
//     WaitFailover waits until the Sentinels name the promoted replica, a
//     few seconds later. Its MasterName and Addrs are what a client's
//     Sentinel settings hold.
//
// Both have WaitReplicated, which waits until the replicas hold everything
// written so far, so that a test can kill a master without losing data to
// asynchronous replication.
//
// When redis-server is not on PATH, the first Start installs Debian's package
// with apt-get (running apt-get update when the plain install fails), holding
// a file lock so that parallel test binaries do not run apt-get at the same
// time. A test whose server cannot be installed or started fails with the
// reason; it is never skipped.
package redistest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// startAttempts bounds the retries when another process takes the chosen
	// port between choosing it and redis-server binding it.
	startAttempts = 8
	// readyTimeout is how long a started server has to answer PING.
	readyTimeout = 10 * time.Second
	// stopTimeout is how long a server has to exit after SIGTERM before it
	// is killed.
	stopTimeout = 5 * time.Second
)

// Server is one redis-server process started by Start.
type Server struct {
	// Addr is the server's host:port, such as "127.0.0.1:40123".
	Addr string
	// TLSAddr is the host:port of its TLS port, for a server started
	// with StartTLS; "" otherwise.
	TLSAddr string

	tb      testing.TB
	binary  string
	dir     string
	args    []string // extra redis-server arguments
	conf    string   // a config file, given before the arguments; "" for none
	port    int
	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	paused  bool
	log     *bytes.Buffer
	clients []*redis.Client
}

// Start starts a redis-server for tb on a free loopback port and returns it
// once it answers PING. The server is stopped, and every client made by
// Client is closed, when tb's cleanups run. Start calls tb.Fatal when
// redis-server cannot be installed or started.
func Start(tb testing.TB) *Server {
	tb.Helper()
	bin, err := ensureBinary()
	if err != nil {
		tb.Fatalf("redistest: %v", err)
	}
	return start(tb, bin, nil)
}

// StartUser starts a redis-server like Start with an ACL user besides the
// default one: name, with password, allowed every command, key and
// channel, for tests of larder with a Redis password. The default user
// keeps no password, for the test's own setup and Client.
func StartUser(tb testing.TB, name, password string) *Server {
	tb.Helper()
	bin, err := ensureBinary()
	if err != nil {
		tb.Fatalf("redistest: %v", err)
	}
	return start(tb, bin, []string{"--user", name, "on", ">" + password, "~*", "&*", "+@all"})
}

func start(tb testing.TB, bin string, args []string) *Server {
	tb.Helper()
	s := &Server{tb: tb, binary: bin, dir: tb.TempDir(), args: args}
	tb.Cleanup(s.cleanup)
	if err := s.start(0); err != nil {
		tb.Fatalf("redistest: %v", err)
	}
	return s
}

// Client returns a new go-redis client connected to the server, with
// context deadlines enabled as in production. It is closed when the test's
// cleanups run; a test may close it earlier.
func (s *Server) Client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr, ContextTimeoutEnabled: true})
	s.mu.Lock()
	s.clients = append(s.clients, c)
	s.mu.Unlock()
	return c
}

// Stop stops the server, for tests of what happens when Redis is down:
// commands on its clients then fail. Restart starts it again on the same
// address. Stop on a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked()
}

// Pause freezes the server process (SIGSTOP), for tests of what happens
// when Redis stalls: connections stay open, but commands get no answer
// until Resume. Stop and the test's cleanup resume a paused server first.
// Pause on a paused or stopped server does nothing.
func (s *Server) Pause() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || s.paused {
		return
	}
	if err := s.cmd.Process.Signal(pauseSignal); err != nil {
		s.tb.Errorf("redistest: pause: %v", err)
		return
	}
	s.paused = true
}

// Resume thaws a server frozen by Pause; on any other server it does
// nothing.
func (s *Server) Resume() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resumeLocked()
}

func (s *Server) resumeLocked() {
	if s.cmd == nil || !s.paused {
		return
	}
	_ = s.cmd.Process.Signal(resumeSignal)
	s.paused = false
}

// Restart stops the server if it runs and starts it again on the same
// address. The data is lost: persistence is off. Restart calls tb.Fatal when
// the server cannot start again (for example when its port was taken
// meanwhile).
func (s *Server) Restart() {
	s.tb.Helper()
	s.mu.Lock()
	s.stopLocked()
	port := s.port
	s.mu.Unlock()
	if err := s.start(port); err != nil {
		s.tb.Fatalf("redistest: restart: %v", err)
	}
}

func (s *Server) cluster() bool { return slices.Contains(s.args, "--cluster-enabled") }

func (s *Server) cleanup() {
	s.mu.Lock()
	clients := s.clients
	s.clients = nil
	s.stopLocked()
	s.mu.Unlock()
	for _, c := range clients {
		_ = c.Close()
	}
}

// start runs redis-server on port, or on a free port when port is 0, retrying
// with another port when the chosen one was taken meanwhile.
func (s *Server) start(port int) error {
	attempts := startAttempts
	if port != 0 {
		attempts = 1 // a restart must keep its address
	}
	var last error
	for i := 0; i < attempts; i++ {
		p := port
		if p == 0 {
			var err error
			if p, err = freePort(s.cluster()); err != nil {
				return err
			}
		}
		err := s.run(p)
		if err == nil {
			return nil
		}
		last = err
		if !errors.Is(err, errAddrInUse) {
			return err
		}
	}
	return fmt.Errorf("no free port after %d attempts: %w", attempts, last)
}

var errAddrInUse = errors.New("address already in use")

// run starts one redis-server on port and waits until it answers PING.
func (s *Server) run(port int) error {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	log := new(bytes.Buffer)
	args := []string{
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
		"--daemonize", "no",
		"--protected-mode", "yes",
		"--loglevel", "warning",
	}
	args = append(args, s.args...)
	if s.conf != "" {
		// Sentinel mode needs a config file, which must come first.
		args = append([]string{s.conf}, args...)
	}
	cmd := exec.Command(s.binary, args...)
	cmd.Dir = s.dir
	cmd.Stdout = log
	cmd.Stderr = log
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.binary, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()

	if err := waitReady(addr, exited); err != nil {
		_ = cmd.Process.Kill()
		<-exited
		out := strings.TrimSpace(log.String())
		if strings.Contains(out, "Address already in use") {
			return fmt.Errorf("port %d: %w", port, errAddrInUse)
		}
		return fmt.Errorf("redis-server on %s: %w; its output:\n%s", addr, err, out)
	}

	s.mu.Lock()
	s.Addr, s.port, s.cmd, s.exited, s.log = addr, port, cmd, exited, log
	s.mu.Unlock()
	return nil
}

// waitReady polls addr with PING until it answers, the process exits or the
// timeout passes. It speaks RESP on a plain connection so that the polling
// does not fill the test log with go-redis dial errors.
func waitReady(addr string, exited <-chan struct{}) error {
	deadline := time.Now().Add(readyTimeout)
	for {
		err := ping(addr)
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return errors.New("exited before answering PING")
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no answer to PING within %s: %w", readyTimeout, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func ping(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	buf := make([]byte, 64)
	n, err := conn.Read(buf)
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(buf[:n], []byte("+PONG")) {
		return fmt.Errorf("PING answered %q", bytes.TrimSpace(buf[:n]))
	}
	return nil
}

func (s *Server) stopLocked() {
	if s.cmd == nil {
		return
	}
	// A stopped process would not act on SIGTERM before the kill.
	s.resumeLocked()
	_ = s.cmd.Process.Signal(terminateSignal)
	select {
	case <-s.exited:
	case <-time.After(stopTimeout):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
	s.cmd, s.exited = nil, nil
}

// freePort asks the kernel for a free loopback port; with bus set, one whose
// cluster bus port (port+10000) is free too. Another process may take it
// before redis-server binds it; start retries when that happens.
func freePort(bus bool) (int, error) {
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("find a free port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		if !bus {
			l.Close()
			return port, nil
		}
		if port+clusterBusOffset > 65535 {
			l.Close()
			continue
		}
		lb, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+clusterBusOffset)))
		l.Close()
		if err != nil {
			continue
		}
		lb.Close()
		return port, nil
	}
	return 0, errors.New("find a free port: no port with a free cluster bus port")
}

// ensureBinary returns the path of redis-server, installing Debian's package
// first when it is missing.
func ensureBinary() (string, error) {
	if p, err := exec.LookPath("redis-server"); err == nil {
		return p, nil
	}
	unlock, err := lockFile(filepath.Join(os.TempDir(), "larder-redistest-install.lock"))
	if err != nil {
		return "", fmt.Errorf("redis-server is not on PATH and the install lock failed: %w", err)
	}
	defer unlock()
	// Another test binary may have installed it while this one waited.
	if p, err := exec.LookPath("redis-server"); err == nil {
		return p, nil
	}
	if err := install(); err != nil {
		return "", fmt.Errorf("redis-server is not on PATH and installing it failed (install it with `apt-get install redis-server`): %w", err)
	}
	p, err := exec.LookPath("redis-server")
	if err != nil {
		return "", fmt.Errorf("redis-server is still not on PATH after apt-get install: %w", err)
	}
	return p, nil
}

func install() error {
	if apt("install", "-y", "-q", "redis-server") == nil {
		return nil
	}
	if err := apt("update", "-q"); err != nil {
		return err
	}
	return apt("install", "-y", "-q", "redis-server")
}

func apt(args ...string) error {
	cmd := exec.Command("apt-get", args...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("apt-get %s: %w\n%s", strings.Join(args, " "), err, tail(out, 2000))
	}
	return nil
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
