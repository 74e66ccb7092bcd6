package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/config"
	"github.com/larder-dev/larder/store"
)

// app holds what every subcommand shares: the global flags, the output
// streams and the clock.
type app struct {
	configPath string
	redisAddr  string
	logLevel   string
	logFormat  string

	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	now    func() time.Time
	logger *slog.Logger
	// redisLog and grpcLog, when set, receive go-redis's and grpc-go's own
	// log lines; main sets them.
	redisLog *redisLogger
	grpcLog  *grpcLogger
	// noFetch keeps the runs of this process from fetching the ONNX
	// Runtime library: serve never downloads anything.
	noFetch bool
	// self is the command as the user typed it, for the commands that
	// hints suggest; main sets it, "larder" otherwise.
	self string
	// ownProcess is true when the command is the process's, as main runs
	// it, and may set what is process-wide (the garbage collector's
	// target); tests run commands inside theirs.
	ownProcess bool
}

// selfCommand returns the command the user typed to run larder: "larder"
// when it was found on PATH, or the path they gave, such as ./bin/larder
// after make demo, so that the commands hints suggest run as shown.
func selfCommand(arg0 string) string {
	// A binary that go run built lives in a temporary folder it removes
	// afterwards: name the command instead.
	if arg0 == "" || !strings.Contains(arg0, "/") || strings.Contains(arg0, "/go-build") {
		return "larder"
	}
	if strings.ContainsAny(arg0, " \t'\"$`\\") {
		return "'" + strings.ReplaceAll(arg0, "'", `'\''`) + "'"
	}
	return arg0
}

// hint returns text with each line that begins, after its indentation,
// with the command "larder " spelled as the user runs it.
func (a *app) hint(text string) string {
	if a.self == "" || a.self == "larder" {
		return text
	}
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		rest := strings.TrimLeft(l, " ")
		if !strings.HasPrefix(rest, "larder ") {
			continue
		}
		l = l[:len(l)-len(rest)] + a.self + rest[len("larder"):]
		// Keep a comment in its column: take the longer name out of
		// the spaces before it, leaving one at least.
		if j := strings.Index(l, "  #"); j >= 0 {
			k := j + 1 // the last space before "#"
			for cut := len(a.self) - len("larder"); cut > 0 && k > 0 && l[k-1] == ' '; cut-- {
				k--
			}
			l = l[:k] + l[j+1:]
		}
		lines[i] = l
	}
	return strings.Join(lines, "\n")
}

// run executes the command line args and returns the process exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr, now: time.Now}
	return a.run(ctx, args)
}

// run executes args with a's streams and clock and returns the exit code.
// Tests call it on an app built with a fixed clock.
func (a *app) run(ctx context.Context, args []string) int {
	// Under --log-format json even the errors of the command line itself,
	// found before the flags are set, are records.
	for i, arg := range args {
		if arg == "--" {
			break
		}
		if arg == "--log-format=json" || arg == "--log-format" && i+1 < len(args) && args[i+1] == "json" {
			a.jsonStderr()
		}
	}
	stdin, stdout, stderr := a.stdin, a.stdout, a.stderr
	root := a.rootCommand()
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		if h := negativeArgsHint(cmd, args); h != "" {
			return fmt.Errorf("%w\n%s", err, a.hint(h))
		}
		return err
	})
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	defer a.flushStderr()
	if err := root.ExecuteContext(ctx); err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			return ee.code
		}
		a.printError("larder: ", err.Error())
		return 1
	}
	return 0
}

// negativeArgsHint returns, for a command line args whose flags cmd could
// not parse, how to pass the negative numbers in it as arguments (keys,
// such as user -1), which the flag parser reads as flags: after --, as
// "a negative number is read as a flag: pass it after --, as in\n  larder
// get user_profile -- -1". It returns "" when args holds no negative
// number before a --.
func negativeArgsHint(cmd *cobra.Command, args []string) string {
	var before, after []string
	value := false // the argument is the value of the flag before it
	for _, arg := range args {
		switch {
		case arg == "--":
			return ""
		case value:
			before, value = append(before, arg), false
		case negativeNumber(arg):
			after = append(after, arg)
		case strings.HasPrefix(arg, "-") && len(arg) > 1:
			before = append(before, arg)
			name, _, hasValue := strings.Cut(strings.TrimLeft(arg, "-"), "=")
			var f *pflag.Flag
			if strings.HasPrefix(arg, "--") {
				f = cmd.Flags().Lookup(name)
			} else if len(name) == 1 {
				f = cmd.Flags().ShorthandLookup(name)
			}
			value = !hasValue && f != nil && f.NoOptDefVal == ""
		default:
			before = append(before, arg)
		}
	}
	if len(after) == 0 {
		return ""
	}
	return "a negative number is read as a flag: pass it after --, as in\n  larder " +
		strings.Join(before, " ") + " -- " + strings.Join(after, " ")
}

// negativeNumber reports whether arg is a negative number, such as -1 or
// -2.5.
func negativeNumber(arg string) bool {
	if len(arg) < 2 || arg[0] != '-' {
		return false
	}
	_, err := strconv.ParseFloat(arg[1:], 64)
	return err == nil && arg[1] >= '0' && arg[1] <= '9'
}

// printError writes msg, which may hold several lines, to a.stderr as one
// error: after prefix, or, under --log-format json, as one record at ERROR.
func (a *app) printError(prefix, msg string) {
	if j, ok := a.stderr.(*jsonLines); ok {
		_ = j.record(slog.LevelError, msg)
		return
	}
	fmt.Fprintln(a.stderr, prefix+printable(msg))
}

// printable returns msg with the characters a terminal would act on
// (control characters but line breaks and tabs, and the marks that turn
// the direction of text) written as Go escapes, such as \x1b: an error may
// quote a name from a file or a request (a Parquet column, a stream
// field), and such a name must not recolour, move or hide what the
// terminal shows.
func printable(msg string) string {
	clean := true
	for _, r := range msg {
		if unsafeRune(r) {
			clean = false
			break
		}
	}
	if clean {
		return msg
	}
	var b strings.Builder
	for _, r := range msg {
		if unsafeRune(r) {
			q := strconv.QuoteRuneToASCII(r)
			b.WriteString(q[1 : len(q)-1])
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func unsafeRune(r rune) bool {
	return r != '\n' && r != '\t' && unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r)
}

// jsonStderr makes a.stderr, if it is not already, a jsonLines over it, and
// returns it.
func (a *app) jsonStderr() *jsonLines {
	j, ok := a.stderr.(*jsonLines)
	if !ok {
		j = newJSONLines(a.stderr, time.Now)
		a.stderr = j
	}
	return j
}

// flushStderr writes what a.stderr holds of a line not ended yet, under
// --log-format json.
func (a *app) flushStderr() {
	if j, ok := a.stderr.(*jsonLines); ok {
		_ = j.Flush()
	}
}

// exitError ends the command with a code after it has printed its own message.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "larder",
		Short: "A hybrid precompute-and-serve feature and prediction store",
		Long: `larder precomputes features and predictions from Parquet into Redis as atomic
generations, and serves them over gRPC with a light ONNX re-rank per request.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(a.logLevel)); err != nil {
				return fmt.Errorf("--log-level %q: want debug, info, warn or error", a.logLevel)
			}
			if a.logFormat != "text" && a.logFormat != "json" {
				return fmt.Errorf("--log-format %q: want text (key=value lines) or json (one object a line)", a.logFormat)
			}
			a.logger = a.newLogger(level)
			if a.logFormat == "json" {
				a.jsonStderr()
			}
			if a.grpcLog != nil {
				a.grpcLog.logger.Store(a.logger)
				switch cmd.Name() {
				case "rank", "push", "reload":
					a.grpcLog.demote.Store(true)
				}
			}
			if a.redisLog != nil {
				a.redisLog.logger.Store(a.logger)
			}
			return nil
		},
	}
	f := root.PersistentFlags()
	f.StringVarP(&a.configPath, "config", "c", "larder.yaml", "the project file")
	f.StringVar(&a.redisAddr, "redis", "", "Redis address (host:port), overriding redis.addresses in the project file")
	f.StringVar(&a.logLevel, "log-level", "warn", "log level: debug, info, warn or error")
	f.StringVar(&a.logFormat, "log-format", "text", "log format: text (key=value lines) or json (one object a line, for a log collector)")
	root.AddCommand(
		a.demoCommand(),
		a.initCommand(),
		a.validateCommand(),
		a.materializeCommand(),
		a.serveCommand(),
		a.reloadCommand(),
		a.rankCommand(),
		a.pushCommand(),
		a.viewsCommand(),
		a.getCommand(),
		a.keysCommand(),
		a.runsCommand(),
		a.cleanupCommand(),
		a.scoreCommand(),
		a.exportCommand(),
		a.jobsCommand(),
		a.scheduleCommand(),
		a.workerCommand(),
		a.ingestCommand(),
		a.benchCommand(),
		a.versionCommand(),
		a.setupCommand(),
	)
	return root
}

// newLogger returns a logger to standard error of records at level and
// above, in the format --log-format names.
func (a *app) newLogger(level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if a.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(a.stderr, opts))
	}
	return slog.New(slog.NewTextHandler(a.stderr, opts))
}

// loadConfig loads and validates the project file.
func (a *app) loadConfig() (*larder.Project, error) {
	p, _, err := a.loadConfigPlaces()
	return p, err
}

// loadConfigPlaces is loadConfig, and also returns where each field of the
// file is written (see config.Loader.LoadPlaces).
func (a *app) loadConfigPlaces() (*larder.Project, *config.Places, error) {
	return a.loadConfigWith(config.Loader{})
}

// loadConfigWith is loadConfigPlaces with the loader l.
func (a *app) loadConfigWith(l config.Loader) (*larder.Project, *config.Places, error) {
	p, places, err := l.LoadPlaces(a.configPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("%w (name the project file with --config, or create one with `larder demo`)", err)
	}
	return p, places, err
}

// loadProjectWithoutStore loads and validates the project file for a
// command that opens no store (export): the variable that
// redis.password_env names need not be set, since no password is sent.
func (a *app) loadProjectWithoutStore() (*larder.Project, error) {
	p, _, err := a.loadConfigWith(config.Loader{LookupEnv: func(name string) (string, bool) {
		v, _ := os.LookupEnv(name)
		return v, true
	}})
	return p, err
}

// loadProject loads and validates the project file, applying --redis.
func (a *app) loadProject() (*larder.Project, error) {
	p, err := a.loadConfig()
	if err != nil {
		return nil, err
	}
	if a.redisAddr != "" {
		p.Redis.Addrs = []string{a.redisAddr}
	}
	return p, nil
}

// backend is an open online store, with the embedded server behind it when
// the project has no Redis address.
type backend struct {
	client   redis.UniversalClient
	store    *store.Store
	embedded *miniredis.Miniredis
}

// Close closes the client and stops the embedded server.
func (b *backend) Close() {
	b.client.Close()
	if b.embedded != nil {
		b.embedded.Close()
	}
}

// openStore connects to the project's Redis, or starts the embedded server
// on a free loopback port when the project names none. It fails when Redis
// does not answer.
func (a *app) openStore(ctx context.Context, p *larder.Project) (*backend, error) {
	return a.openStoreWith(ctx, p, false)
}

// openStoreWith is openStore; serving opens it for a server: a Redis that
// does not answer is reported on standard error and the store is returned
// anyway, for a long-running process that becomes ready when Redis
// returns, and a read of a view whose schema changed reads the newest
// generation of the process's own schema (store.Options.ServeOwnSchema).
func (a *app) openStoreWith(ctx context.Context, p *larder.Project, serving bool) (*backend, error) {
	b := &backend{}
	if p.Redis.Embedded() {
		m := miniredis.NewMiniRedis()
		if err := m.StartAddr("127.0.0.1:0"); err != nil {
			return nil, fmt.Errorf("start the embedded Redis server: %w", err)
		}
		b.embedded = m
		b.client = redis.NewClient(&redis.Options{Addr: m.Addr()})
	} else {
		r := p.Redis
		for _, f := range []*string{&r.TLSCAFile, &r.TLSCertFile, &r.TLSKeyFile} {
			*f = p.Path(*f)
		}
		c, err := store.Connect(r)
		if err != nil {
			return nil, err
		}
		b.client = c
		pingCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := c.Ping(pingCtx).Err(); err != nil {
			// A refused password does not get better by waiting.
			if fix, ok := authFix(r, err); ok {
				c.Close()
				return nil, fmt.Errorf("redis %v: authentication failed (%w): %s %s", p.Redis.Addrs, err, fix, a.configPath)
			}
			err = fmt.Errorf("%w%s", err, tlsHint(r, err))
			if !serving {
				c.Close()
				return nil, fmt.Errorf("redis %v: %w (is it running? set redis.addresses in %s or pass --redis)", p.Redis.Addrs, err, a.configPath)
			}
			fmt.Fprintf(a.stderr, "warning: redis %v does not answer (%v): starting anyway, NOT_SERVING until it does\n", p.Redis.Addrs, err)
		}
	}
	b.store = store.New(b.client, p.Name, store.Options{
		Logger:        a.logger,
		Now:           a.now,
		GracePeriod:   p.Redis.GracePeriod,
		PushRetention: p.Redis.PushRetention,
		// A server keeps serving through a change of a view's schema: it
		// reads the newest generation of the schema its larder.yaml has.
		ServeOwnSchema: serving,
	})
	return b, nil
}

// checkEviction refuses a Redis whose maxmemory-policy may evict larder's
// keys, for the commands that write or serve, unless redis.allow_eviction
// is set (then it warns). A server that does not say is let through.
func (a *app) checkEviction(ctx context.Context, p *larder.Project, b *backend) error {
	if b.embedded != nil {
		return nil
	}
	policy, evicts, err := b.store.EvictionPolicy(ctx)
	if err != nil || !evicts {
		return nil // unreachable now: the command reports it as it goes
	}
	if p.Redis.AllowEviction {
		fmt.Fprintf(a.stderr, "warning: redis maxmemory-policy is %s: Redis may evict larder's rows (they then read as missing), leases and metadata; allowed by redis.allow_eviction\n", policy)
		return nil
	}
	return fmt.Errorf("redis maxmemory-policy is %s, which may evict larder's rows, leases and generation metadata: a view would silently lose rows. Set it to noeviction (CONFIG SET maxmemory-policy noeviction, and in redis.conf), or set redis.allow_eviction: true in %s to run anyway", policy, a.configPath)
}

// tlsHint says, for an error of a first command to Redis, when TLS may be
// the cause: a TLS client to a plaintext port waits for an answer that
// never comes, and a plaintext client to a TLS port is cut off.
func tlsHint(r larder.Redis, err error) string {
	msg := err.Error()
	switch {
	case r.TLS && (errors.Is(err, context.DeadlineExceeded) || strings.Contains(msg, "timeout") ||
		strings.Contains(msg, "first record does not look like a TLS handshake") || strings.Contains(msg, "EOF")):
		return "; redis.tls is on: does the server speak TLS on this port? A plaintext port does not answer a TLS client"
	case r.TLS && strings.Contains(msg, "certificate"):
		return "; redis.tls is on: check tls_ca_file (the authority that signed the server's certificate) and tls_server_name"
	case !r.TLS && (strings.Contains(msg, "EOF") || strings.Contains(msg, "connection reset")):
		return "; the server closed the connection: if it speaks TLS on this port, set redis.tls: true"
	}
	return ""
}

// authFix reports whether err is Redis refusing r's user or password and,
// if so, which settings to fix; the project file's name follows it.
func authFix(r larder.Redis, err error) (fix string, ok bool) {
	msg := err.Error()
	password := "redis.password in"
	if r.PasswordEnv != "" {
		password = "the password in environment variable " + r.PasswordEnv + " (redis.password_env) in"
	}
	switch {
	case strings.HasPrefix(msg, "NOAUTH"):
		return "the server asks for a password: set redis.password_env to the environment variable that holds it (or redis.password), and redis.username if it is not the default user, in", true
	case strings.HasPrefix(msg, "WRONGPASS") && r.Username != "":
		return "check redis.username (" + r.Username + ") and " + password, true
	case strings.HasPrefix(msg, "WRONGPASS"):
		return "check " + password, true
	}
	return "", false
}

// needsRedis refuses inspection commands on an embedded project: its data
// lives only inside the process that serves it.
func needsRedis(p *larder.Project, what string) error {
	if p.Redis.Embedded() {
		return fmt.Errorf("%s reads a Redis server, but the project uses the embedded store, which lives only inside `larder serve` or `larder demo`: pass --redis ADDR (those commands print it) or set redis.addresses", what)
	}
	return nil
}

// isTerminal reports whether w is a terminal, for progress bars.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// redisLogger passes the lines go-redis logs by itself (dial retries, cluster
// topology changes), which would otherwise go to the process's standard error
// ahead of the command's own message, to the command's logger at info level:
// the commands report the errors that matter themselves.
type redisLogger struct {
	logger atomic.Pointer[slog.Logger]
}

// Printf implements go-redis's logging interface.
func (r *redisLogger) Printf(ctx context.Context, format string, args ...any) {
	if l := r.logger.Load(); l != nil {
		l.InfoContext(ctx, strings.TrimPrefix(fmt.Sprintf(format, args...), "redis: "), "from", "go-redis")
	}
}
