// Command readme writes the README tour's transcripts again from a run of
// the demo: `make docs` builds bin/larder and runs it from the repository
// root. It starts `larder demo --keep-serving`, puts the demo's output in
// the tour's first transcript, then runs every larder command line of the
// README's code blocks (`$ ./bin/larder …`, `$ larder …`) against the demo's
// server and store, and puts each command's output after it.
//
// The README writes one gRPC address and one Redis address throughout (those
// of its `grpcurl … list` and of its first `--redis` flag); the commands run
// with the demo's real ones, and their output shows the README's. Where the
// README shortens an output with a line of "...", the new output is
// shortened the same way: as many lines before it and after it.
//
// grpcurl is not run: its transcripts are kept as written. The tests check
// what they can depend on: TestServeEmbedded that the services listed are
// the server's, and TestDocsCommands that every larder command and flag
// exists.
//
// Usage, from the repository root:
//
//	readme [-larder ./bin/larder] [-readme README.md] [-dir .work/demo]
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

func main() {
	larder := flag.String("larder", "./bin/larder", "the larder binary to run")
	readme := flag.String("readme", "README.md", "the README to write")
	dir := flag.String("dir", ".work/demo", "the demo's folder, as the README's commands name it")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *larder, *readme, *dir); err != nil {
		fmt.Fprintf(os.Stderr, "readme: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, larder, readme, dir string) error {
	data, err := os.ReadFile(readme)
	if err != nil {
		return err
	}
	doc := strings.Split(string(data), "\n")
	canon, err := readmeAddrs(doc)
	if err != nil {
		return err
	}

	d, err := startDemo(ctx, larder, dir)
	if err != nil {
		return err
	}
	defer d.stop()
	fmt.Fprintf(os.Stderr, "readme: the demo serves on %s, its store is at %s\n", d.addrs.grpc, d.addrs.redis)

	changed := 0
	out := make([]string, 0, len(doc))
	for i := 0; i < len(doc); {
		if !strings.HasPrefix(doc[i], "```") {
			out = append(out, doc[i])
			i++
			continue
		}
		end := i + 1
		for end < len(doc) && !strings.HasPrefix(doc[end], "```") {
			end++
		}
		if end == len(doc) {
			return fmt.Errorf("%s:%d: a code block that does not end", readme, i+1)
		}
		block, err := transcribe(ctx, larder, doc[i+1:end], d, canon)
		if err != nil {
			return fmt.Errorf("%s:%d: %w", readme, i+1, err)
		}
		if strings.Join(block, "\n") != strings.Join(doc[i+1:end], "\n") {
			changed++
		}
		out = append(out, doc[i])
		out = append(out, block...)
		out = append(out, doc[end])
		i = end + 1
	}
	fmt.Fprintf(os.Stderr, "readme: %d transcripts changed\n", changed)
	return os.WriteFile(readme, []byte(strings.Join(out, "\n")), 0o644)
}

// addrs are a gRPC and a Redis address.
type addrs struct{ grpc, redis string }

// readmeAddrs returns the addresses the README writes: grpcurl's and the
// first --redis flag's.
func readmeAddrs(doc []string) (addrs, error) {
	text := strings.Join(doc, "\n")
	g := regexp.MustCompile(`grpcurl -plaintext (\S+) list`).FindStringSubmatch(text)
	r := regexp.MustCompile(`--redis (\S+) -c`).FindStringSubmatch(text)
	if g == nil || r == nil {
		return addrs{}, errors.New("the README has no `grpcurl -plaintext ADDR list` or no `--redis ADDR -c` to take its addresses from")
	}
	return addrs{grpc: g[1], redis: r[1]}, nil
}

// demoRun is a running `larder demo --keep-serving`.
type demoRun struct {
	cmd    *exec.Cmd
	output []string // what the demo printed, from its first step to "Done in"
	addrs  addrs
	done   chan error
}

// startDemo starts the demo and reads its output until it serves.
func startDemo(ctx context.Context, larder, dir string) (*demoRun, error) {
	cmd := exec.Command(larder, "demo", "--keep-serving", "--dir", dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	d := &demoRun{cmd: cmd, done: make(chan error, 1)}
	ready := make(chan error, 1)
	go func() {
		ready <- d.read(stdout)
		_, _ = io.Copy(io.Discard, stdout)
		d.done <- cmd.Wait()
	}()
	select {
	case err := <-ready:
		if err != nil {
			d.stop()
			return nil, fmt.Errorf("larder demo: %w\n%s", err, stderr.String())
		}
		return d, nil
	case <-ctx.Done():
		d.stop()
		return nil, ctx.Err()
	}
}

// read reads the demo's output until it names the Redis address of the
// store it keeps serving.
func (d *demoRun) read(r io.Reader) error {
	grpcLine := regexp.MustCompile(`^\s+gRPC on (\S+) `)
	redisLine := regexp.MustCompile(`larder --redis (\S+) -c`)
	sc := bufio.NewScanner(r)
	recording, done := false, false
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "[1/6]"):
			recording = true
		case strings.HasPrefix(line, "Done in"):
			recording, done = false, true
		}
		if recording {
			d.output = append(d.output, line)
		}
		if m := grpcLine.FindStringSubmatch(line); m != nil {
			d.addrs.grpc = m[1]
		}
		if m := redisLine.FindStringSubmatch(line); m != nil && done {
			d.addrs.redis = m[1]
			d.output = trimBlank(d.output)
			if d.addrs.grpc == "" {
				return errors.New("it printed no gRPC address")
			}
			return nil
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return errors.New("it ended before it served")
}

// stop interrupts the demo and waits for it.
func (d *demoRun) stop() {
	_ = d.cmd.Process.Signal(os.Interrupt)
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
	}
}

// transcribe returns a code block's lines with its transcripts written
// again: the demo's output for the block that begins with its first step,
// and each larder command's output after it.
func transcribe(ctx context.Context, larder string, block []string, d *demoRun, canon addrs) ([]string, error) {
	if len(block) > 0 && strings.HasPrefix(block[0], "[1/6]") {
		return shortenParagraphs(block, replaceAddrs(d.output, d.addrs, canon)), nil
	}
	var out []string
	for i := 0; i < len(block); {
		line := block[i]
		if !strings.HasPrefix(line, "$ ") {
			out = append(out, line)
			i++
			continue
		}
		// The command, with its continuation lines.
		start := i
		cmdline := strings.TrimPrefix(line, "$ ")
		for strings.HasSuffix(strings.TrimSpace(block[i]), `\`) && i+1 < len(block) {
			i++
			cmdline = strings.TrimSuffix(strings.TrimSpace(cmdline), `\`) + " " + strings.TrimSpace(block[i])
		}
		i++
		out = append(out, block[start:i]...)
		// Its output, up to the blank line before the next command.
		end := i
		for end < len(block) && !strings.HasPrefix(block[end], "$ ") {
			end++
		}
		old := block[i:end]
		gap := 0
		for gap < len(old) && old[len(old)-1-gap] == "" {
			gap++
		}
		old = old[:len(old)-gap]
		args, ok := larderArgs(cmdline)
		if !ok {
			out = append(out, old...)
		} else {
			got, err := runLarder(ctx, larder, replaceAll(args, canon, d.addrs))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", cmdline, err)
			}
			out = append(out, shorten(old, replaceAddrs(got, d.addrs, canon))...)
		}
		for range gap {
			out = append(out, "")
		}
		i = end
	}
	return out, nil
}

// larderArgs returns the arguments of a larder command line, and false
// for any other command.
func larderArgs(cmdline string) ([]string, bool) {
	f := strings.Fields(cmdline)
	if len(f) == 0 || (f[0] != "./bin/larder" && f[0] != "larder") {
		return nil, false
	}
	for _, a := range f {
		if strings.ContainsAny(a, `'"|<>;&$`) {
			return nil, false // a shell's job: keep the transcript as written
		}
	}
	return f[1:], true
}

// runLarder runs larder with args from the current folder, and returns
// what it printed, standard output and error together.
func runLarder(ctx context.Context, larder string, args []string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var b bytes.Buffer
	cmd := exec.CommandContext(ctx, larder, args...)
	cmd.Stdout, cmd.Stderr = &b, &b
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%w\n%s", err, b.String())
	}
	return trimBlank(strings.Split(strings.TrimRight(b.String(), "\n"), "\n")), nil
}

// shorten cuts lines as old is cut: where old has a line of "..." (its
// only one), as many lines before it and after it, around old's line.
func shorten(old, lines []string) []string {
	cut := -1
	for i, l := range old {
		if strings.TrimSpace(l) == "..." {
			if cut >= 0 {
				cut = -2 // more than one: the demo's own output keeps its cuts
				break
			}
			cut = i
		}
	}
	if cut < 0 {
		return lines
	}
	head, tail := cut, len(old)-cut-1
	if head+tail >= len(lines) {
		return lines
	}
	out := append([]string{}, lines[:head]...)
	out = append(out, old[cut])
	return append(out, lines[len(lines)-tail:]...)
}

// shortenParagraphs shortens each paragraph of lines (lines between blank
// lines) as the same paragraph of old is shortened, rows and columns; when
// the two do not have as many paragraphs, lines is returned whole.
func shortenParagraphs(old, lines []string) []string {
	po, pn := paragraphs(old), paragraphs(lines)
	if len(po) != len(pn) {
		return lines
	}
	var out []string
	for i := range pn {
		if i > 0 {
			out = append(out, "")
		}
		out = append(out, shorten(po[i], dropColumns(po[i], pn[i]))...)
	}
	return out
}

// paragraphs splits lines at blank lines.
func paragraphs(lines []string) [][]string {
	var ps [][]string
	var p []string
	for _, l := range lines {
		if strings.TrimSpace(l) == "" {
			if p != nil {
				ps = append(ps, p)
			}
			p = nil
			continue
		}
		p = append(p, l)
	}
	if p != nil {
		ps = append(ps, p)
	}
	return ps
}

// columnGap separates the columns of a table as tabwriter aligns them.
var columnGap = regexp.MustCompile(`\s{2,}`)

// dropColumns drops from the table in lines the columns that the table in
// old leaves out with a column of "...": old's header is its first line
// with such a column, and lines' header is the line at the same place.
func dropColumns(old, lines []string) []string {
	h := -1
	for i, l := range old {
		if strings.Contains(l, "  ...  ") {
			h = i
			break
		}
	}
	if h < 0 || h >= len(lines) {
		return lines
	}
	indent := old[h][:len(old[h])-len(strings.TrimLeft(old[h], " "))]
	oldHeader := columnGap.Split(strings.TrimSpace(old[h]), -1)
	header := columnGap.Split(strings.TrimSpace(lines[h]), -1)
	keep := map[string]bool{}
	for _, c := range oldHeader {
		keep[c] = c != "..."
	}
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	for _, l := range lines[h:] {
		cells := columnGap.Split(strings.TrimSpace(l), -1)
		if len(cells) != len(header) {
			return lines
		}
		var row []string
		dots := false
		for j, c := range cells {
			switch {
			case keep[header[j]]:
				row = append(row, c)
			case !dots:
				row = append(row, "...")
				dots = true
			}
		}
		fmt.Fprintf(tw, "%s%s\n", indent, strings.Join(row, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return lines
	}
	out := append([]string{}, lines[:h]...)
	return append(out, strings.Split(strings.TrimRight(b.String(), "\n"), "\n")...)
}

// replaceAddrs writes to's addresses for from's in lines.
func replaceAddrs(lines []string, from, to addrs) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = strings.NewReplacer(from.grpc, to.grpc, from.redis, to.redis).Replace(l)
	}
	return out
}

// replaceAll is replaceAddrs for arguments.
func replaceAll(args []string, from, to addrs) []string {
	return replaceAddrs(args, from, to)
}

// trimBlank drops the blank lines at the end of lines.
func trimBlank(lines []string) []string {
	for len(lines) > 0 && strings.TrimSpace(lines[len(lines)-1]) == "" {
		lines = lines[:len(lines)-1]
	}
	return lines
}
