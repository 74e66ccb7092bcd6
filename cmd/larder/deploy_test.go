package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/parser"
	"github.com/spf13/cobra"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/config"
	"github.com/larder-dev/larder/models"
)

// The files in deploy/ run this binary: these tests hold them to it. Each
// larder command line they hold (a unit's ExecStart, a container's args,
// the image's CMD, a command quoted in a comment) must parse with the
// binary's own command tree, flag values included; the environment
// variables they set must be ones larder reads; and the Kubernetes
// manifests must agree with themselves (probes, ports, selectors, the
// ConfigMap's project file) and with the time larder takes to stop.

const deployDir = "../../deploy"

// deployFiles is everything in deploy/, read once.
type deployFiles struct {
	commands []deployCommand
	env      []deployEnv
	units    []systemdUnit
	// envFiles maps the base name of each example environment file
	// (larder.env for larder.env.example) to the names it sets.
	envFiles      map[string][]string
	objects       []k8sObject
	containerfile containerfile
}

// deployCommand is one larder command line found in a deploy file.
type deployCommand struct {
	where string   // file and place, for messages
	args  []string // the arguments after "larder"
}

// deployEnv is one environment variable a deploy file sets.
type deployEnv struct{ where, name string }

func readDeploy(tb testing.TB) *deployFiles {
	tb.Helper()
	d := &deployFiles{envFiles: map[string][]string{}}
	err := filepath.WalkDir(deployDir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(deployDir, p)
		rel = "deploy/" + filepath.ToSlash(rel)
		name := e.Name()
		switch {
		case name == "Containerfile":
			d.readContainerfile(tb, rel, string(data))
		case strings.HasSuffix(name, ".dockerignore"):
		case strings.HasSuffix(name, ".service"):
			d.readUnit(tb, rel, string(data))
		case strings.HasSuffix(name, ".env.example"):
			d.readEnvFile(tb, rel, strings.TrimSuffix(name, ".example"), string(data))
		case strings.HasSuffix(name, ".yaml") && strings.Contains(rel, "/kubernetes/"):
			d.readManifests(tb, rel, data)
		case strings.HasSuffix(name, ".json") && strings.Contains(rel, "/grafana/"):
			// TestDashboardMetrics checks the dashboard.
		default:
			tb.Errorf("%s: no test knows this file: add its checks to deploy_test.go", rel)
		}
		d.readQuoted(rel, string(data))
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

// quotedLarder matches a larder command quoted in prose: `larder jobs`.
var quotedLarder = regexp.MustCompile("`larder ([^`]*)`")

// readQuoted collects the larder commands that the comments of a file
// quote between backticks.
func (d *deployFiles) readQuoted(file, text string) {
	for i, line := range strings.Split(text, "\n") {
		for _, m := range quotedLarder.FindAllStringSubmatch(line, -1) {
			d.commands = append(d.commands, deployCommand{where: fmt.Sprintf("%s:%d (quoted)", file, i+1), args: strings.Fields(m[1])})
		}
	}
}

// joinContinued joins the lines that end with a backslash to the next one,
// as systemd and container files do, and returns each logical line with
// the number of its first physical line.
func joinContinued(text string) (lines []string, numbers []int) {
	var cur strings.Builder
	start := 0
	for i, line := range strings.Split(text, "\n") {
		if cur.Len() == 0 {
			start = i + 1
			if t := strings.TrimSpace(line); strings.HasPrefix(t, "#") || strings.HasPrefix(t, ";") {
				lines, numbers = append(lines, t), append(numbers, start)
				continue
			}
		}
		if s, ok := strings.CutSuffix(strings.TrimRight(line, " \t"), `\`); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(line)
		lines, numbers = append(lines, strings.TrimSpace(cur.String())), append(numbers, start)
		cur.Reset()
	}
	return lines, numbers
}

// systemdUnit holds the settings of one unit file that the tests check,
// by section and key, each with every value it is given.
type systemdUnit struct {
	file     string
	settings map[string][]string // "Service.ExecStart"
	exec     deployCommand       // the larder command of ExecStart
}

func (u systemdUnit) get(key string) string {
	v := u.settings[key]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

func (d *deployFiles) readUnit(tb testing.TB, file, text string) {
	tb.Helper()
	u := systemdUnit{file: file, settings: map[string][]string{}}
	section := ""
	lines, numbers := joinContinued(text)
	for i, line := range lines {
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				tb.Errorf("%s:%d: not a unit setting: %q", file, numbers[i], line)
				continue
			}
			key := section + "." + strings.TrimSpace(k)
			u.settings[key] = append(u.settings[key], strings.TrimSpace(v))
			where := fmt.Sprintf("%s:%d", file, numbers[i])
			switch key {
			case "Service.ExecStart":
				args := strings.Fields(expandSpecifiers(v))
				if len(args) == 0 || path.Base(args[0]) != "larder" {
					tb.Errorf("%s: ExecStart does not run larder: %q", where, v)
					continue
				}
				u.exec = deployCommand{where: where, args: args[1:]}
				d.commands = append(d.commands, u.exec)
			case "Service.Environment":
				for _, f := range strings.Fields(v) {
					name, _, _ := strings.Cut(strings.Trim(f, `"`), "=")
					d.env = append(d.env, deployEnv{where: where, name: name})
				}
			}
		}
	}
	d.units = append(d.units, u)
}

// expandSpecifiers replaces the unit specifiers the deploy units use with
// sample values, as systemd would.
func expandSpecifiers(s string) string {
	return strings.NewReplacer("%H", "web-1", "%i", "1", "%%", "%").Replace(s)
}

func (d *deployFiles) readEnvFile(tb testing.TB, file, base, text string) {
	tb.Helper()
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, _, ok := strings.Cut(line, "=")
		if !ok {
			tb.Errorf("%s:%d: not NAME=value: %q", file, i+1, line)
			continue
		}
		d.env = append(d.env, deployEnv{where: fmt.Sprintf("%s:%d", file, i+1), name: name})
		d.envFiles[base] = append(d.envFiles[base], name)
	}
}

// containerfile is what the tests check of deploy/Containerfile.
type containerfile struct {
	text       string
	entrypoint []string
	cmd        deployCommand
	expose     []string
	env        map[string]string
	copies     []string // the destinations of COPY
}

func (d *deployFiles) readContainerfile(tb testing.TB, file, text string) {
	tb.Helper()
	c := containerfile{text: text, env: map[string]string{}}
	lines, numbers := joinContinued(text)
	for i, line := range lines {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		where := fmt.Sprintf("%s:%d", file, numbers[i])
		instr, rest, _ := strings.Cut(line, " ")
		rest = strings.TrimSpace(rest)
		switch strings.ToUpper(instr) {
		case "ENTRYPOINT", "CMD":
			var argv []string
			if err := json.Unmarshal([]byte(rest), &argv); err != nil {
				tb.Errorf("%s: %s is not in exec form (a JSON array): %v", where, instr, err)
				continue
			}
			if instr == "ENTRYPOINT" {
				c.entrypoint = argv
			} else {
				c.cmd = deployCommand{where: where, args: argv}
			}
		case "EXPOSE":
			c.expose = append(c.expose, strings.Fields(rest)...)
		case "ENV":
			for _, f := range strings.Fields(rest) {
				name, value, _ := strings.Cut(f, "=")
				c.env[name] = value
				d.env = append(d.env, deployEnv{where: where, name: name})
			}
		case "COPY":
			if f := strings.Fields(rest); len(f) > 0 {
				c.copies = append(c.copies, f[len(f)-1])
			}
		}
	}
	if !slices.Equal(c.entrypoint, []string{"larder"}) {
		tb.Errorf("%s: ENTRYPOINT is %q, want [\"larder\"]", file, c.entrypoint)
	}
	if c.cmd.args != nil {
		d.commands = append(d.commands, c.cmd)
	}
	d.containerfile = c
}

// k8sObject is the part of a Kubernetes object the tests read. The fields
// of the kinds the manifests hold share it; a field a kind lacks stays
// zero.
type k8sObject struct {
	where      string
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name   string            `yaml:"name"`
		Labels map[string]string `yaml:"labels"`
	} `yaml:"metadata"`
	Data map[string]string `yaml:"data"`
	Spec struct {
		Replicas *int `yaml:"replicas"`
		// Selector is a label map for a Service and {matchLabels: ...}
		// for a Deployment and a PodDisruptionBudget.
		Selector map[string]any `yaml:"selector"`
		Template struct {
			Metadata struct {
				Labels map[string]string `yaml:"labels"`
			} `yaml:"metadata"`
			Spec k8sPodSpec `yaml:"spec"`
		} `yaml:"template"`
		Ports []struct {
			Name       string `yaml:"name"`
			Port       int    `yaml:"port"`
			TargetPort any    `yaml:"targetPort"`
		} `yaml:"ports"`
		MinAvailable any `yaml:"minAvailable"`
	} `yaml:"spec"`
}

type k8sPodSpec struct {
	TerminationGracePeriodSeconds *int           `yaml:"terminationGracePeriodSeconds"`
	Containers                    []k8sContainer `yaml:"containers"`
	Volumes                       []struct {
		Name      string `yaml:"name"`
		ConfigMap *struct {
			Name string `yaml:"name"`
		} `yaml:"configMap"`
	} `yaml:"volumes"`
}

type k8sContainer struct {
	Name    string   `yaml:"name"`
	Image   string   `yaml:"image"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	Ports   []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	Env            []k8sEnv  `yaml:"env"`
	ReadinessProbe *k8sProbe `yaml:"readinessProbe"`
	LivenessProbe  *k8sProbe `yaml:"livenessProbe"`
	StartupProbe   *k8sProbe `yaml:"startupProbe"`
	Lifecycle      *struct {
		PreStop *struct {
			Exec *struct {
				Command []string `yaml:"command"`
			} `yaml:"exec"`
		} `yaml:"preStop"`
	} `yaml:"lifecycle"`
	Resources struct {
		Requests map[string]any `yaml:"requests"`
	} `yaml:"resources"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
}

type k8sEnv struct {
	Name      string `yaml:"name"`
	ValueFrom *struct {
		SecretKeyRef *struct {
			Name string `yaml:"name"`
			Key  string `yaml:"key"`
		} `yaml:"secretKeyRef"`
	} `yaml:"valueFrom"`
}

type k8sProbe struct {
	GRPC *struct {
		Port any `yaml:"port"`
	} `yaml:"grpc"`
	TCPSocket *struct {
		Port any `yaml:"port"`
	} `yaml:"tcpSocket"`
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port any    `yaml:"port"`
	} `yaml:"httpGet"`
}

// port returns the port the probe checks: a number or a port name.
func (p *k8sProbe) port() (any, string) {
	switch {
	case p.GRPC != nil:
		return p.GRPC.Port, "grpc"
	case p.TCPSocket != nil:
		return p.TCPSocket.Port, "tcpSocket"
	case p.HTTPGet != nil:
		return p.HTTPGet.Port, "httpGet"
	}
	return nil, "none"
}

func (d *deployFiles) readManifests(tb testing.TB, file string, data []byte) {
	tb.Helper()
	f, err := parser.ParseBytes(data, 0)
	if err != nil {
		tb.Errorf("%s: not well-formed YAML: %v", file, err)
		return
	}
	for i, doc := range f.Docs {
		if doc.Body == nil {
			continue
		}
		where := fmt.Sprintf("%s (document %d)", file, i+1)
		if tk := doc.Body.GetToken(); tk != nil && tk.Position != nil {
			where = fmt.Sprintf("%s:%d", file, tk.Position.Line)
		}
		var generic map[string]any
		if err := yaml.NodeToValue(doc.Body, &generic); err != nil {
			tb.Errorf("%s: %v", where, err)
			continue
		}
		var o k8sObject
		if err := yaml.NodeToValue(doc.Body, &o); err != nil {
			tb.Errorf("%s: %v", where, err)
			continue
		}
		o.where = where
		if o.Kind == "Kustomization" {
			d.checkKustomization(tb, where, generic)
			continue
		}
		if o.APIVersion == "" || o.Kind == "" || o.Metadata.Name == "" {
			tb.Errorf("%s: want apiVersion, kind and metadata.name; got %q, %q, %q", where, o.APIVersion, o.Kind, o.Metadata.Name)
			continue
		}
		for j, c := range o.Spec.Template.Spec.Containers {
			cwhere := fmt.Sprintf("%s %s container %s", where, o.Metadata.Name, c.Name)
			if len(c.Command) > 0 {
				tb.Errorf("%s: sets command %q; leave it to the image's ENTRYPOINT (larder) and give args", cwhere, c.Command)
			}
			d.commands = append(d.commands, deployCommand{where: cwhere, args: o.Spec.Template.Spec.Containers[j].Args})
			for _, e := range c.Env {
				d.env = append(d.env, deployEnv{where: cwhere, name: e.Name})
			}
		}
		d.objects = append(d.objects, o)
	}
}

// checkKustomization checks that a kustomization lists every manifest
// beside it, and only those.
func (d *deployFiles) checkKustomization(tb testing.TB, where string, k map[string]any) {
	tb.Helper()
	var listed []string
	rs, _ := k["resources"].([]any)
	for _, r := range rs {
		listed = append(listed, fmt.Sprint(r))
	}
	entries, err := os.ReadDir(filepath.Join(deployDir, "kubernetes"))
	if err != nil {
		tb.Fatal(err)
	}
	var want []string
	for _, e := range entries {
		if n := e.Name(); strings.HasSuffix(n, ".yaml") && n != "kustomization.yaml" {
			want = append(want, n)
		}
	}
	slices.Sort(listed)
	if !slices.Equal(listed, want) {
		tb.Errorf("%s: resources are %q; the folder holds %q", where, listed, want)
	}
}

// parseCommand parses args, a larder command line, with a fresh command
// tree of the binary, as running it would, without running it. It returns
// the subcommand, its flags set from args.
func parseCommand(args []string) (*cobra.Command, error) {
	a := &app{stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard, now: time.Now}
	root := a.rootCommand()
	if len(args) == 0 {
		return nil, fmt.Errorf("no arguments: larder alone prints its help")
	}
	cmd, rest, err := root.Find(args)
	if err != nil {
		return nil, err
	}
	if cmd == root {
		return nil, fmt.Errorf("names no larder subcommand")
	}
	if err := cmd.ParseFlags(rest); err != nil {
		return nil, fmt.Errorf("larder %s: %w", cmd.Name(), err)
	}
	if err := cmd.ValidateArgs(cmd.Flags().Args()); err != nil {
		return nil, fmt.Errorf("larder %s: %w", cmd.Name(), err)
	}
	return cmd, nil
}

// TestDeployCommands checks every larder command line in deploy/: its
// subcommand exists, each of its flags exists on that subcommand (or is a
// global one), each flag's value parses, and its arguments are ones the
// subcommand takes.
func TestDeployCommands(t *testing.T) {
	d := readDeploy(t)
	if len(d.commands) < 8 {
		t.Fatalf("found %d larder command lines in deploy/, want the units', the manifests' and the image's", len(d.commands))
	}
	seen := map[string]bool{}
	for _, c := range d.commands {
		cmd, err := parseCommand(c.args)
		if err != nil {
			t.Errorf("%s: larder %s: %v", c.where, strings.Join(c.args, " "), err)
			continue
		}
		seen[cmd.Name()] = true
	}
	for _, name := range []string{"serve", "schedule", "worker", "ingest"} {
		if !seen[name] {
			t.Errorf("no deploy file runs larder %s", name)
		}
	}
}

// TestDeployDocs checks the larder commands of docs/operations.md's
// "Deploying larder" as TestDeployCommands checks deploy/'s: those of its
// code blocks, and those its prose quotes.
func TestDeployDocs(t *testing.T) {
	data, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(data), "\n## Deploying larder\n")
	if !ok {
		t.Fatal(`docs/operations.md has no section "## Deploying larder"`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var commands []deployCommand
	var prose strings.Builder
	lines := strings.Split(section, "\n")
	for i := 0; i < len(lines); i++ {
		if !strings.HasPrefix(strings.TrimSpace(lines[i]), "```") {
			prose.WriteString(lines[i] + " ")
			continue
		}
		// A code block: its commands, or, in a transcript (lines
		// prompted by "$ "), the prompted lines only, the rest being
		// what the commands printed.
		start := i + 1
		for i++; i < len(lines) && !strings.HasPrefix(strings.TrimSpace(lines[i]), "```"); i++ {
		}
		block := lines[start:i]
		transcript := slices.ContainsFunc(block, func(l string) bool { return strings.HasPrefix(l, "$ ") })
		for j, line := range block {
			if transcript && !strings.HasPrefix(line, "$ ") {
				continue
			}
			if args, ok := shellLarder(line); ok {
				commands = append(commands, deployCommand{where: fmt.Sprintf("Deploying larder, code line %d", start+j+1), args: args})
			}
		}
	}
	for _, m := range quotedLarder.FindAllStringSubmatch(prose.String(), -1) {
		commands = append(commands, deployCommand{where: "Deploying larder, prose", args: strings.Fields(m[1])})
	}
	if len(commands) < 5 {
		t.Fatalf("found %d larder commands in Deploying larder", len(commands))
	}
	for _, c := range commands {
		if _, err := parseCommand(c.args); err != nil {
			t.Errorf("docs/operations.md, %s: larder %s: %v", c.where, strings.Join(c.args, " "), err)
		}
	}
}

// envAssignment matches a shell line's leading NAME=value.
var envAssignment = regexp.MustCompile(`^[A-Z_][A-Z0-9_]*=`)

// shellLarder returns the arguments of the larder command on a shell line:
// larder first on the line, after "$", after "--" (kubectl exec) or after
// environment assignments; up to the first pipe, list operator, comment or
// redirection.
func shellLarder(line string) ([]string, bool) {
	f := strings.Fields(line)
	for i, w := range f {
		if w != "larder" {
			continue
		}
		if i > 0 && f[i-1] != "$" && f[i-1] != "--" && !envAssignment.MatchString(f[i-1]) {
			continue
		}
		var args []string
		for _, a := range f[i+1:] {
			if a == "|" || a == ";" || a == "&&" || a == "&" || a == "\\" || strings.HasPrefix(a, "#") || strings.HasPrefix(a, ">") {
				break
			}
			args = append(args, a)
		}
		return args, true
	}
	return nil, false
}

// TestDeployCommandsRejects checks that the parsing TestDeployCommands
// relies on refuses what larder would refuse.
func TestDeployCommandsRejects(t *testing.T) {
	for _, args := range [][]string{
		{"serv"},
		{"serve", "--drian=15s"},
		{"serve", "--drain=15"},
		{"worker", "--concurrency", "two"},
		{"schedule", "--grace"},
		{"--config=/etc/larder/larder.yaml"},
		{"schedule", "extra"},
	} {
		if _, err := parseCommand(args); err == nil {
			t.Errorf("larder %s: parsed, want an error", strings.Join(args, " "))
		}
	}
	if _, err := parseCommand([]string{"--config", "/etc/larder/larder.yaml", "serve", "--listen", "0.0.0.0:50051", "--drain=15s"}); err != nil {
		t.Errorf("a good command line: %v", err)
	}
}

// deployProject returns the project file of the ConfigMap larder-config,
// parsed as larder parses it, and the environment variables that loading
// it reads.
func deployProject(tb testing.TB, d *deployFiles) (*larder.Project, []string) {
	tb.Helper()
	for _, o := range d.objects {
		if o.Kind != "ConfigMap" {
			continue
		}
		data, ok := o.Data["larder.yaml"]
		if !ok {
			tb.Fatalf("%s: ConfigMap %s has no larder.yaml", o.where, o.Metadata.Name)
		}
		var read []string
		l := config.Loader{LookupEnv: func(name string) (string, bool) {
			read = append(read, name)
			return "not-a-secret", true
		}}
		p, err := l.Parse("/etc/larder/larder.yaml", []byte(data))
		if err != nil {
			tb.Fatalf("%s: larder.yaml does not load: %v", o.where, err)
		}
		return p, read
	}
	tb.Fatal("deploy/kubernetes holds no ConfigMap with larder.yaml")
	return nil, nil
}

// TestDeployEnv checks the environment variables deploy/ sets against
// those larder reads: the ONNX Runtime library's, the command line's token,
// and those the project file names (redis.password_env, which every
// command reads, and server.auth.tokens_env, which serve reads). Each one
// larder needs must be given to each process that reads it.
func TestDeployEnv(t *testing.T) {
	d := readDeploy(t)
	p, configEnv := deployProject(t, d)
	if len(configEnv) == 0 {
		t.Error("the ConfigMap's larder.yaml reads no environment variable: give the Redis password through redis.password_env")
	}
	if p.Server.Auth.TokensEnv == "" {
		t.Error("the ConfigMap's larder.yaml sets no server.auth.tokens_env")
	}
	read := map[string]string{
		models.LibraryEnv:       "the ONNX Runtime library (models.LibraryEnv)",
		tokenEnv:                "the command line's bearer token",
		p.Server.Auth.TokensEnv: "server.auth.tokens_env",
		// Read by the Go runtime (serve's garbage collector target is
		// documented in docs/operations.md, Sizing).
		"GOMEMLIMIT": "the Go runtime's soft memory limit",
		"GOGC":       "the Go runtime's garbage collector target",
	}
	for _, name := range configEnv {
		read[name] = "redis.password_env"
	}
	for _, e := range d.env {
		if _, ok := read[e.name]; !ok {
			t.Errorf("%s: sets %s, which larder does not read (it reads %s)", e.where, e.name, strings.Join(slices.Sorted(maps.Keys(read)), ", "))
		}
	}

	// Every command loads the project file, so every process needs the
	// variables it reads; serve needs the tokens besides.
	for _, o := range d.objects {
		for _, c := range o.Spec.Template.Spec.Containers {
			cmd, err := parseCommand(c.Args)
			if err != nil {
				continue // TestDeployCommands reports it
			}
			need := slices.Clone(configEnv)
			if cmd.Name() == "serve" {
				need = append(need, p.Server.Auth.TokensEnv)
			}
			for _, name := range need {
				if !slices.ContainsFunc(c.Env, func(e k8sEnv) bool {
					return e.Name == name && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil
				}) {
					t.Errorf("%s: container %s (larder %s) does not take %s from a Secret", o.where, c.Name, cmd.Name(), name)
				}
			}
		}
	}
	for _, u := range d.units {
		base := path.Base(u.get("Service.EnvironmentFile"))
		names, ok := d.envFiles[base]
		if !ok {
			t.Errorf("%s: EnvironmentFile %q has no example %s.example in deploy/systemd", u.file, u.get("Service.EnvironmentFile"), base)
			continue
		}
		for _, name := range configEnv {
			if !slices.Contains(names, name) {
				t.Errorf("deploy/systemd/%s.example: lacks %s, which larder.yaml's redis.password_env names", base, name)
			}
		}
		if cmd, err := parseCommand(u.exec.args); err == nil && cmd.Name() == "serve" && !slices.Contains(names, p.Server.Auth.TokensEnv) {
			t.Errorf("deploy/systemd/%s.example: lacks %s, the tokens serve reads", base, p.Server.Auth.TokensEnv)
		}
	}

	// The image's library is where the image says it is.
	c := d.containerfile
	lib := c.env[models.LibraryEnv]
	if lib == "" || !slices.Contains(c.copies, lib) {
		t.Errorf("deploy/Containerfile: ENV %s=%q is not a file the image COPYs (%q)", models.LibraryEnv, lib, c.copies)
	}
	if !strings.Contains(c.text, models.FetchCommand) {
		t.Errorf("deploy/Containerfile: does not fetch the library with %q, as make setup-onnxruntime does", models.FetchCommand)
	}
}

// listenPort returns the port of a host:port flag value.
func listenPort(addr string) (int, error) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(port)
}

// stopTime returns how long the command may take to stop after SIGTERM:
// serve's --drain, or the --grace of schedule and worker (by default the
// project's scheduler.shutdown_grace). ok is false for a command that
// stops at once.
func stopTime(tb testing.TB, cmd *cobra.Command, p *larder.Project) (time.Duration, bool) {
	tb.Helper()
	name := "grace"
	switch cmd.Name() {
	case "serve":
		name = "drain"
	case "schedule", "worker":
	default:
		return 0, false
	}
	f := cmd.Flags().Lookup(name)
	if f == nil {
		tb.Fatalf("larder %s has no --%s", cmd.Name(), name)
	}
	if name == "grace" && !f.Changed {
		return p.Scheduler.ShutdownGrace, true
	}
	v, err := time.ParseDuration(f.Value.String())
	if err != nil {
		tb.Fatalf("larder %s --%s=%s: %v", cmd.Name(), name, f.Value, err)
	}
	return v, true
}

// TestDeployKubernetes checks the manifests against each other and against
// the commands they run: the probes check ports the container declares,
// and those ports are the ones larder listens on; the Service and the
// PodDisruptionBudgets select pods that exist, by ports those pods name;
// --config is the ConfigMap's file; the grace period covers preStop and
// --drain or --grace; and every container asks for resources.
func TestDeployKubernetes(t *testing.T) {
	d := readDeploy(t)
	p, _ := deployProject(t, d)
	kinds := map[string]int{}
	var deployments []k8sObject
	for _, o := range d.objects {
		kinds[o.Kind]++
		if o.Kind == "Deployment" {
			deployments = append(deployments, o)
		}
	}
	for _, k := range []string{"ConfigMap", "Deployment", "Service", "PodDisruptionBudget"} {
		if kinds[k] == 0 {
			t.Errorf("deploy/kubernetes holds no %s", k)
		}
	}
	components := map[string]*k8sObject{}
	for i, o := range deployments {
		sel := matchLabels(o.Spec.Selector)
		if len(sel) == 0 || !labelsMatch(sel, o.Spec.Template.Metadata.Labels) {
			t.Errorf("%s: selector %v does not select the template's labels %v", o.where, sel, o.Spec.Template.Metadata.Labels)
		}
		spec := o.Spec.Template.Spec
		for _, c := range spec.Containers {
			where := fmt.Sprintf("%s container %s", o.where, c.Name)
			cmd, err := parseCommand(c.Args)
			if err != nil {
				continue // TestDeployCommands reports it
			}
			components[cmd.Name()] = &deployments[i]
			ports := map[string]int{}
			declared := map[int]bool{}
			for _, cp := range c.Ports {
				ports[cp.Name] = cp.ContainerPort
				declared[cp.ContainerPort] = true
			}
			// Every address larder listens on beyond the pod is declared,
			// and every declared port is one larder listens on.
			listened := map[int]bool{}
			for _, flag := range []string{"listen", "metrics-listen"} {
				f := cmd.Flags().Lookup(flag)
				if f == nil || f.Value.String() == "" {
					continue
				}
				port, err := listenPort(f.Value.String())
				if err != nil {
					t.Errorf("%s: --%s=%s: %v", where, flag, f.Value, err)
					continue
				}
				listened[port] = true
				if !declared[port] {
					t.Errorf("%s: --%s=%s, and the container declares no port %d", where, flag, f.Value, port)
				}
			}
			for port := range declared {
				if !listened[port] {
					t.Errorf("%s: declares port %d, on which no --listen or --metrics-listen flag listens", where, port)
				}
			}
			// Probes check declared ports.
			probes := map[string]*k8sProbe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe, "startup": c.StartupProbe}
			for kind, pr := range probes {
				if pr == nil {
					continue
				}
				port, how := pr.port()
				n, ok := resolvePort(port, ports)
				if !ok {
					t.Errorf("%s: %s probe (%s) checks port %v, which the container does not declare (%v)", where, kind, how, port, ports)
				}
				if how == "grpc" && cmd.Name() == "serve" {
					if f := cmd.Flags().Lookup("listen"); f == nil || !strings.HasSuffix(f.Value.String(), ":"+strconv.Itoa(n)) {
						t.Errorf("%s: the gRPC %s probe checks port %d, and serve listens on %v", where, kind, n, f.Value)
					}
				}
			}
			if cmd.Name() == "serve" {
				if c.ReadinessProbe == nil || c.ReadinessProbe.GRPC == nil {
					t.Errorf("%s: serve's readiness probe is not on gRPC health", where)
				}
				if c.LivenessProbe == nil {
					t.Errorf("%s: serve has no liveness probe", where)
				}
				// Health is NOT_SERVING until a view has a live generation
				// and while Redis does not answer: a pod waiting for its
				// first materialization is not broken, and a restart would
				// not help it.
				for kind, pr := range map[string]*k8sProbe{"liveness": c.LivenessProbe, "startup": c.StartupProbe} {
					if pr != nil && pr.GRPC != nil {
						t.Errorf("%s: serve's %s probe is on gRPC health, which is NOT_SERVING until the first materialization: a pod waiting for it would be restarted (probe the port with tcpSocket)", where, kind)
					}
				}
			}
			// --config is the ConfigMap's larder.yaml.
			cfg := cmd.Flags().Lookup("config").Value.String()
			if !mountsConfigMap(o, c, cfg, d) {
				t.Errorf("%s: --config=%s is not the larder.yaml of a mounted ConfigMap", where, cfg)
			}
			// The grace period covers preStop and larder's own stop.
			if stop, ok := stopTime(t, cmd, p); ok {
				pre := preStopSleep(t, where, c)
				grace := 30 * time.Second // Kubernetes' default
				if spec.TerminationGracePeriodSeconds != nil {
					grace = time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second
				}
				if grace <= pre+stop {
					t.Errorf("%s: terminationGracePeriodSeconds is %v, not more than preStop %v + larder %s's %v: Kubernetes would SIGKILL it mid-stop", where, grace, pre, cmd.Name(), stop)
				}
			}
			if len(c.Resources.Requests) == 0 {
				t.Errorf("%s: asks for no resources", where)
			}
		}
	}
	for _, name := range []string{"serve", "schedule", "worker"} {
		if components[name] == nil {
			t.Errorf("no Deployment runs larder %s", name)
		}
	}
	if o := components["serve"]; o != nil && (o.Spec.Replicas == nil || *o.Spec.Replicas < 2) {
		t.Errorf("%s: serve runs %v replicas, want at least 2", o.where, o.Spec.Replicas)
	}
	if o := components["schedule"]; o != nil && (o.Spec.Replicas == nil || *o.Spec.Replicas < 2) {
		t.Errorf("%s: schedule runs %v replicas, want 2 (they coordinate through Redis)", o.where, o.Spec.Replicas)
	}

	for _, o := range d.objects {
		switch o.Kind {
		case "Service":
			sel := map[string]string{}
			for k, v := range o.Spec.Selector {
				sel[k] = fmt.Sprint(v)
			}
			targets := selected(sel, deployments)
			if len(targets) == 0 {
				t.Errorf("%s: Service %s selects no Deployment's pods (%v)", o.where, o.Metadata.Name, sel)
			}
			for _, sp := range o.Spec.Ports {
				for _, dep := range targets {
					for _, c := range dep.Spec.Template.Spec.Containers {
						ports := map[string]int{}
						for _, cp := range c.Ports {
							ports[cp.Name] = cp.ContainerPort
						}
						target := sp.TargetPort
						if target == nil {
							target = sp.Port
						}
						if _, ok := resolvePort(target, ports); !ok {
							t.Errorf("%s: Service port %s targets %v, which %s container %s does not declare", o.where, sp.Name, target, dep.Metadata.Name, c.Name)
						}
					}
				}
			}
		case "PodDisruptionBudget":
			if len(selected(matchLabels(o.Spec.Selector), deployments)) == 0 {
				t.Errorf("%s: PodDisruptionBudget %s selects no Deployment's pods", o.where, o.Metadata.Name)
			}
			if o.Spec.MinAvailable == nil {
				t.Errorf("%s: PodDisruptionBudget %s sets no minAvailable", o.where, o.Metadata.Name)
			}
		}
	}

	// The image exposes the ports serve's pods declare, and its default
	// command listens on them.
	if o := components["serve"]; o != nil {
		var want []string
		for _, c := range o.Spec.Template.Spec.Containers {
			for _, cp := range c.Ports {
				want = append(want, strconv.Itoa(cp.ContainerPort))
			}
		}
		got := slices.Sorted(slices.Values(d.containerfile.expose))
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("deploy/Containerfile: EXPOSE %v; serve's pods declare %v", got, want)
		}
		if cmd, err := parseCommand(d.containerfile.cmd.args); err == nil {
			for _, flag := range []string{"listen", "metrics-listen"} {
				port, err := listenPort(cmd.Flags().Lookup(flag).Value.String())
				if err != nil || !slices.Contains(got, strconv.Itoa(port)) {
					t.Errorf("deploy/Containerfile: CMD's --%s=%s is not an EXPOSEd port", flag, cmd.Flags().Lookup(flag).Value)
				}
			}
		}
	}
}

// matchLabels returns the matchLabels of a Deployment's or a
// PodDisruptionBudget's selector.
func matchLabels(sel map[string]any) map[string]string {
	out := map[string]string{}
	m, _ := sel["matchLabels"].(map[string]any)
	for k, v := range m {
		out[k] = fmt.Sprint(v)
	}
	return out
}

func labelsMatch(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return len(sel) > 0
}

// selected returns the Deployments whose pods sel selects.
func selected(sel map[string]string, deployments []k8sObject) []k8sObject {
	var out []k8sObject
	for _, o := range deployments {
		if labelsMatch(sel, o.Spec.Template.Metadata.Labels) {
			out = append(out, o)
		}
	}
	return out
}

// resolvePort resolves a probe's or a Service's port, a number or a name,
// against a container's ports, by name.
func resolvePort(port any, ports map[string]int) (int, bool) {
	switch v := port.(type) {
	case string:
		n, ok := ports[v]
		return n, ok
	case nil:
		return 0, false
	default:
		n, err := strconv.Atoi(fmt.Sprint(v))
		if err != nil {
			return 0, false
		}
		for _, p := range ports {
			if p == n {
				return n, true
			}
		}
		return n, false
	}
}

// mountsConfigMap reports whether file is a key of a ConfigMap of the
// manifests that container c of Deployment o mounts at file's folder.
func mountsConfigMap(o k8sObject, c k8sContainer, file string, d *deployFiles) bool {
	for _, m := range c.VolumeMounts {
		if path.Clean(m.MountPath) != path.Dir(file) {
			continue
		}
		for _, v := range o.Spec.Template.Spec.Volumes {
			if v.Name != m.Name || v.ConfigMap == nil {
				continue
			}
			for _, cm := range d.objects {
				if cm.Kind == "ConfigMap" && cm.Metadata.Name == v.ConfigMap.Name {
					_, ok := cm.Data[path.Base(file)]
					return ok
				}
			}
		}
	}
	return false
}

// preStopSleep returns how long a container's preStop hook sleeps: zero
// without one; a hook other than `sleep N` is an error.
func preStopSleep(tb testing.TB, where string, c k8sContainer) time.Duration {
	tb.Helper()
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil {
		return 0
	}
	if e := c.Lifecycle.PreStop.Exec; e != nil && len(e.Command) == 2 && e.Command[0] == "sleep" {
		if n, err := strconv.Atoi(e.Command[1]); err == nil {
			return time.Duration(n) * time.Second
		}
	}
	tb.Errorf("%s: preStop is not [sleep N]; the test cannot tell how long it takes", where)
	return 0
}

// TestDeploySystemd checks the units: each restarts on failure, stops with
// SIGTERM and waits longer than the command's --drain or --grace, reads
// its secrets from an EnvironmentFile, runs as an unprivileged user, and
// serve reloads larder.yaml on `systemctl reload` (SIGHUP).
func TestDeploySystemd(t *testing.T) {
	d := readDeploy(t)
	p, _ := deployProject(t, d)
	seen := map[string]bool{}
	for _, u := range d.units {
		cmd, err := parseCommand(u.exec.args)
		if err != nil {
			continue // TestDeployCommands reports it
		}
		seen[cmd.Name()] = true
		for key, want := range map[string]string{
			"Service.Restart":         "on-failure",
			"Service.KillSignal":      "SIGTERM",
			"Service.NoNewPrivileges": "yes",
			"Service.ProtectSystem":   "strict",
		} {
			if got := u.get(key); got != want {
				t.Errorf("%s: %s=%q, want %q", u.file, key, got, want)
			}
		}
		if u.get("Service.EnvironmentFile") == "" {
			t.Errorf("%s: no EnvironmentFile for the secrets", u.file)
		}
		if user := u.get("Service.User"); user == "" || user == "root" {
			t.Errorf("%s: User=%q; run larder as a user of its own", u.file, user)
		}
		reload := u.get("Service.ExecReload")
		if cmd.Name() == "serve" && reload != "/bin/kill -HUP $MAINPID" {
			t.Errorf("%s: ExecReload=%q, want /bin/kill -HUP $MAINPID (serve reloads larder.yaml on SIGHUP)", u.file, reload)
		}
		if cmd.Name() != "serve" && reload != "" {
			t.Errorf("%s: ExecReload=%q, but only serve reloads larder.yaml", u.file, reload)
		}
		timeout, err := systemdSeconds(u.get("Service.TimeoutStopSec"))
		if err != nil {
			t.Errorf("%s: TimeoutStopSec: %v", u.file, err)
			continue
		}
		if stop, ok := stopTime(t, cmd, p); ok && timeout <= stop {
			t.Errorf("%s: TimeoutStopSec is %v, not more than larder %s's %v: systemd would SIGKILL it mid-stop", u.file, timeout, cmd.Name(), stop)
		}
	}
	for _, name := range []string{"serve", "schedule", "worker", "ingest"} {
		if !seen[name] {
			t.Errorf("no unit in deploy/systemd runs larder %s", name)
		}
	}
}

// systemdSeconds parses a systemd time span of the forms the units use:
// a number of seconds, or a Go duration such as 330s or 5m30s.
func systemdSeconds(s string) (time.Duration, error) {
	if s == "" {
		return 0, fmt.Errorf("not set (systemd's default is 90s; set it)")
	}
	if n, err := strconv.Atoi(s); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	return time.ParseDuration(strings.ReplaceAll(s, "min", "m"))
}

// TestDeployReadsEveryFile makes sure the walk of deploy/ finds the files
// the other tests rely on, so that a moved folder fails rather than passes
// with nothing checked.
func TestDeployReadsEveryFile(t *testing.T) {
	var files []string
	err := filepath.WalkDir(deployDir, func(p string, e fs.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			files = append(files, filepath.ToSlash(strings.TrimPrefix(p, deployDir+"/")))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Containerfile",
		"systemd/larder-serve.service", "systemd/larder-schedule.service",
		"systemd/larder-worker@.service", "systemd/larder-ingest.service",
		"systemd/larder.env.example",
		"kubernetes/configmap.yaml", "kubernetes/kustomization.yaml",
	} {
		if !slices.Contains(files, want) {
			t.Errorf("deploy/%s is missing (found %v)", want, files)
		}
	}
	// Nothing in deploy/ holds a secret: the example environment file
	// leaves every value empty.
	f, err := os.Open(filepath.Join(deployDir, "systemd", "larder.env.example"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for n := 1; s.Scan(); n++ {
		line := strings.TrimSpace(s.Text())
		if name, value, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") && value != "" {
			t.Errorf("deploy/systemd/larder.env.example:%d: %s has a value; leave it empty", n, name)
		}
	}
}
