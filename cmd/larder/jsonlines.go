package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// jsonLines is standard error under --log-format json: each line that a
// command prints for a person (what it serves on, warnings, progress, the
// error it ends with) becomes a log record of its own, so that standard
// error holds one JSON object a line for a log collector. Lines that are
// JSON objects already, the logger's records and spans, pass through.
//
// These lines are written whatever --log-level says, as they are under
// --log-format text: they are what the command says, not its log.
type jsonLines struct {
	mu  sync.Mutex
	out io.Writer
	h   slog.Handler // JSON records to out
	now func() time.Time
	buf []byte // the start of a line not ended yet
}

func newJSONLines(out io.Writer, now func() time.Time) *jsonLines {
	return &jsonLines{out: out, h: slog.NewJSONHandler(out, nil), now: now}
}

// record writes msg, which may hold several lines, as one record at level.
func (j *jsonLines) record(level slog.Level, msg string) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.handle(level, msg)
}

func (j *jsonLines) handle(level slog.Level, msg string) error {
	return j.h.Handle(context.Background(), slog.NewRecord(j.now(), level, msg, 0))
}

// Write writes each complete line of p, and keeps the rest for the next
// Write or Flush.
func (j *jsonLines) Write(p []byte) (int, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.buf = append(j.buf, p...)
	rest := j.buf
	for {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			break
		}
		if err := j.line(rest[:i]); err != nil {
			return len(p), err
		}
		rest = rest[i+1:]
	}
	j.buf = append(j.buf[:0], rest...)
	return len(p), nil
}

// Flush writes a line left without its line break.
func (j *jsonLines) Flush() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if len(j.buf) == 0 {
		return nil
	}
	err := j.line(j.buf)
	j.buf = j.buf[:0]
	return err
}

// line writes one line: as it is when it is a JSON object, else as a
// record whose message is the line, at WARN for a warning and ERROR for
// the error a command ends with (their prefixes dropped), INFO otherwise.
func (j *jsonLines) line(l []byte) error {
	l = bytes.TrimRight(l, "\r")
	if len(bytes.TrimSpace(l)) == 0 {
		return nil
	}
	if l[0] == '{' {
		_, err := j.out.Write(append(l, '\n'))
		return err
	}
	msg, level := string(l), slog.LevelInfo
	switch {
	case strings.HasPrefix(msg, "warning: "):
		msg, level = strings.TrimPrefix(msg, "warning: "), slog.LevelWarn
	case strings.HasPrefix(msg, "larder: "):
		msg, level = strings.TrimPrefix(msg, "larder: "), slog.LevelError
	}
	return j.handle(level, msg)
}
