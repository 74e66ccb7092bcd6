package server

import (
	"context"
	"errors"
	"net"
	"syscall"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/larder-dev/larder"
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
	case errors.Is(err, larder.ErrOverloaded), errors.Is(err, larder.ErrTooLarge):
		return status.Error(codes.ResourceExhausted, err.Error())
	case errors.Is(err, larder.ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, larder.ErrUnavailable), errors.Is(err, syscall.ECONNREFUSED), isNetError(err):
		return status.Error(codes.Unavailable, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

func isNetError(err error) bool {
	var ne net.Error
	return errors.As(err, &ne)
}

func errorsIsNoGeneration(err error) bool { return errors.Is(err, larder.ErrNoGeneration) }
