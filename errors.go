package larder

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Sentinel errors for the expected cases. Adapters wrap them with %w; the
// server maps them to gRPC codes in one table.
var (
	// ErrNotFound means that a named thing (a view, a key, a run) does not exist.
	ErrNotFound = errors.New("not found")
	// ErrNoGeneration means that a view has never been published.
	ErrNoGeneration = errors.New("view has no published generation; run `larder materialize`")
	// ErrSchemaChanged means that the live generation of a view was written
	// with another schema than the view's current definition.
	ErrSchemaChanged = errors.New("the view's definition differs from the one its live generation was written with: materialize the view with this larder.yaml, or run this process with the larder.yaml that wrote the generation")
	// ErrUnavailable means that a dependency (Redis, the model) cannot be reached.
	ErrUnavailable = errors.New("unavailable")
	// ErrDataLost means that the generation a read was served from is gone
	// from the store, or was replaced by another of the same id: Redis lost
	// its data (a restart without persistence, an eviction, a flush, a
	// delete by hand). No answer is built from it; serving resumes once the
	// view is materialized again.
	ErrDataLost = errors.New("the live generation is gone from the store (Redis lost its data, evicted it, or it was deleted): materialize the view again")
	// ErrPublished means that a shard of a sharded generation was asked
	// to begin after the generation was published: an earlier attempt of
	// the shard finished the work.
	ErrPublished = errors.New("the generation was published already")
	// ErrOverloaded means that the server is already holding as much work as
	// it is configured to queue (a ranker's batching.max_queue): the request
	// was refused at once, and may be retried later, with backoff.
	ErrOverloaded = errors.New("overloaded: too many requests are waiting; retry later, with backoff")
	// ErrTooLarge means that a request would cost more than the server's
	// limits allow (server.max_request_cells, server.max_response_bytes):
	// it was refused, and the same request will be refused again; smaller
	// requests will not.
	ErrTooLarge = errors.New("too large for this server")
)

// InvalidError is a request that cannot be served as asked: an unknown view,
// feature or ranker, a key of the wrong type, an empty or oversized request.
// Its message names the problem and is meant for the caller.
type InvalidError struct {
	Msg string
}

func (e *InvalidError) Error() string { return e.Msg }

// Invalidf returns an *InvalidError with a formatted message.
func Invalidf(format string, args ...any) error {
	return &InvalidError{Msg: fmt.Sprintf(format, args...)}
}

// IsInvalid reports whether err is, or wraps, an *InvalidError.
func IsInvalid(err error) bool {
	var ie *InvalidError
	return errors.As(err, &ie)
}

// FieldError is one problem found in a project definition. Path locates the
// field as written in larder.yaml: "views[2].features[0].type"; Msg says what
// is wrong with it and, where it helps, what to do.
type FieldError struct {
	Path string
	Msg  string
}

func (e *FieldError) Error() string {
	if e.Path == "" {
		return e.Msg
	}
	return e.Path + ": " + e.Msg
}

// ValidationError holds every problem found in a project, in the order of the
// file. It is returned by Project.Validate.
type ValidationError struct {
	Errs []*FieldError
}

func (e *ValidationError) Error() string {
	msgs := make([]string, len(e.Errs))
	for i, fe := range e.Errs {
		msgs[i] = fe.Error()
	}
	return strings.Join(msgs, "\n")
}

// Unwrap returns the individual field errors, for errors.As and errors.Is.
func (e *ValidationError) Unwrap() []error {
	errs := make([]error, len(e.Errs))
	for i, fe := range e.Errs {
		errs[i] = fe
	}
	return errs
}

// maxQuoted is how many bytes of a caller's input an error message quotes.
const maxQuoted = 64

// QuoteInput quotes s, an input, for an error message as larder's own
// errors do: whole when it is short, else its first bytes and its length.
func QuoteInput(s string) string { return quoteInput(s) }

// quoteInput quotes s, a caller's input, for an error message: whole when it
// is short, else its first bytes (cut between runes) and its length, so that
// the message stays short whatever was sent.
func quoteInput(s string) string {
	if len(s) <= maxQuoted {
		return strconv.Quote(s)
	}
	cut := maxQuoted
	for cut > maxQuoted-utf8.UTFMax && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + "... (" + strconv.Itoa(len(s)) + " bytes)"
}
