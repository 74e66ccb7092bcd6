package server

import (
	"context"
	"errors"
	"net"
	"syscall"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/larder-dev/larder"
)

// ErrorDomain is the domain of the google.rpc.ErrorInfo that a
// RESOURCE_EXHAUSTED status carries, and Reason* its reasons, which tell
// apart the two refusals that share the code: a request past a limit
// (ReasonTooLarge: the same request is refused again, whenever it is
// sent) and a request the server is too busy to take (ReasonOverloaded:
// to be retried later, with backoff). The HTTP gateway answers the first
// 400 and the second 429.
const (
	ErrorDomain      = "larder"
	ReasonTooLarge   = "TOO_LARGE"
	ReasonOverloaded = "OVERLOADED"
)

// toStatus maps a domain error to the gRPC status the caller sees. It is the
// one table of error codes: every handler returns through it.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var invalid *larder.InvalidError
	switch {
	case errors.As(err, &invalid):
		return status.Error(codes.InvalidArgument, invalid.Msg)
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, larder.ErrNoGeneration), errors.Is(err, larder.ErrSchemaChanged):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, larder.ErrTooLarge):
		return withReason(codes.ResourceExhausted, err.Error(), ReasonTooLarge)
	case errors.Is(err, larder.ErrOverloaded):
		return withReason(codes.ResourceExhausted, err.Error(), ReasonOverloaded)
	case errors.Is(err, larder.ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, larder.ErrUnavailable), errors.Is(err, syscall.ECONNREFUSED), isNetError(err):
		return status.Error(codes.Unavailable, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

// withReason returns the status of code and msg with a google.rpc.ErrorInfo
// of reason in ErrorDomain.
func withReason(code codes.Code, msg, reason string) error {
	st, err := status.New(code, msg).WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: ErrorDomain})
	if err != nil {
		return status.Error(code, msg)
	}
	return st.Err()
}

// reason returns the reason of the google.rpc.ErrorInfo of ErrorDomain
// that st carries, "" when it has none.
func reason(st *status.Status) string {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == ErrorDomain {
			return info.GetReason()
		}
	}
	return ""
}

func isNetError(err error) bool {
	var ne net.Error
	return errors.As(err, &ne)
}

func errorsIsNoGeneration(err error) bool { return errors.Is(err, larder.ErrNoGeneration) }
