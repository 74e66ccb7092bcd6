package server

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/larder-dev/larder"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
)

// adminServer implements larderv1.AdminServiceServer over a Service.
type adminServer struct {
	larderv1.UnimplementedAdminServiceServer
	svc *Service
}

// ReloadModel reloads a ranker's model from its file. An unknown ranker is
// INVALID_ARGUMENT; a refused model is FAILED_PRECONDITION with the reason.
func (a *adminServer) ReloadModel(ctx context.Context, req *larderv1.ReloadModelRequest) (*larderv1.ReloadModelResponse, error) {
	old, current, err := a.svc.Reload(ctx, req.GetRanker())
	if err != nil {
		if ctx.Err() != nil {
			return nil, toStatus(ctx.Err())
		}
		return nil, adminStatus(err)
	}
	return &larderv1.ReloadModelResponse{Ranker: req.GetRanker(), OldVersion: old, NewVersion: current}, nil
}

// ListModels lists the model of every ranker. The path of each model file
// says how the server's machine is laid out, so it is left empty for a
// caller without the admin role; a server without Config.Auth, where every
// caller may do everything, shows it to all.
func (a *adminServer) ListModels(ctx context.Context, _ *larderv1.ListModelsRequest) (*larderv1.ListModelsResponse, error) {
	paths := a.svc.auth == nil
	if c, ok := callerFrom(ctx); ok {
		paths = c.role.Includes(larder.RoleAdmin)
	}
	infos := a.svc.ListModels()
	resp := &larderv1.ListModelsResponse{Models: make([]*larderv1.ModelInfo, len(infos))}
	for i, m := range infos {
		resp.Models[i] = &larderv1.ModelInfo{Ranker: m.Ranker, Version: m.Version, LoadedAt: timestamppb.New(m.LoadedAt)}
		if paths {
			resp.Models[i].Path = m.Path
		}
	}
	return resp, nil
}

// adminStatus maps a reload error to its status: a refused model is
// FAILED_PRECONDITION (the request is fine, the file is not); the rest goes
// through the one table of codes.
func adminStatus(err error) error {
	var refused *ModelRefusedError
	if errors.As(err, &refused) {
		return status.Error(codes.FailedPrecondition, refused.Error())
	}
	return toStatus(err)
}
