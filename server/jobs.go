package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/larder-dev/larder"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
)

// Limits of the JobService's requests.
const (
	// maxAsOfAhead is how far past the server's clock a job's as_of may be:
	// room for the caller's clock running ahead, not for data that does not
	// exist yet. A view computed as of the future would claim a freshness
	// it does not have, until the future comes.
	maxAsOfAhead = time.Minute
	// defaultJobsLimit and maxJobsLimit bound a ListJobs answer.
	defaultJobsLimit = 100
	maxJobsLimit     = 1000
)

// jobServer implements larderv1.JobServiceServer over the Service's job
// queue, checking what a request names against the Service's project.
type jobServer struct {
	larderv1.UnimplementedJobServiceServer
	svc *Service
}

// SubmitJob checks the job against the project and queues it.
func (j *jobServer) SubmitJob(ctx context.Context, req *larderv1.SubmitJobRequest) (*larderv1.SubmitJobResponse, error) {
	spec, err := j.spec(req)
	if err != nil {
		return nil, toStatus(err)
	}
	job, err := j.svc.jobs.Submit(ctx, spec)
	if err != nil {
		return nil, jobStatus(ctx, err)
	}
	return &larderv1.SubmitJobResponse{Job: j.jobToProto(job)}, nil
}

// GetJob returns a job; an unknown id is NOT_FOUND.
func (j *jobServer) GetJob(ctx context.Context, req *larderv1.GetJobRequest) (*larderv1.GetJobResponse, error) {
	if req.GetId() == "" {
		return nil, toStatus(larder.Invalidf("id: a job id is required"))
	}
	job, err := j.svc.jobs.Job(ctx, req.GetId())
	if err != nil {
		return nil, jobStatus(ctx, notFound(req.GetId(), err))
	}
	return &larderv1.GetJobResponse{Job: j.jobToProto(job)}, nil
}

// ListJobs returns the most recent jobs that the request selects.
func (j *jobServer) ListJobs(ctx context.Context, req *larderv1.ListJobsRequest) (*larderv1.ListJobsResponse, error) {
	f, err := jobFilter(req)
	if err != nil {
		return nil, toStatus(err)
	}
	jobs, err := j.svc.jobs.Jobs(ctx, f)
	if err != nil {
		return nil, jobStatus(ctx, err)
	}
	resp := &larderv1.ListJobsResponse{Jobs: make([]*larderv1.Job, len(jobs))}
	for i, job := range jobs {
		resp.Jobs[i] = j.jobToProto(job)
	}
	return resp, nil
}

// CancelJob cancels a job; an unknown id is NOT_FOUND, and a job already
// done comes back unchanged.
func (j *jobServer) CancelJob(ctx context.Context, req *larderv1.CancelJobRequest) (*larderv1.CancelJobResponse, error) {
	if req.GetId() == "" {
		return nil, toStatus(larder.Invalidf("id: a job id is required"))
	}
	job, err := j.svc.jobs.Cancel(ctx, req.GetId())
	if err != nil {
		return nil, jobStatus(ctx, notFound(req.GetId(), err))
	}
	return &larderv1.CancelJobResponse{Job: j.jobToProto(job)}, nil
}

// notFound returns the error of a job queue's read of the job with the
// id: an unknown id is said again in short, whatever the queue wrote.
func notFound(id string, err error) error {
	if errors.Is(err, larder.ErrNotFound) {
		return fmt.Errorf("job %s: %w", echo(id), larder.ErrNotFound)
	}
	return err
}

// jobStatus maps an error of the queue to its status. When the caller's
// context has ended, that is the error, whatever the queue wrapped it in.
func jobStatus(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return toStatus(ctx.Err())
	}
	return toStatus(err)
}

// spec checks a SubmitJobRequest and converts it to the job to queue. It
// returns a *larder.InvalidError naming the offending field.
func (j *jobServer) spec(req *larderv1.SubmitJobRequest) (larder.JobSpec, error) {
	if n := req.GetMaxAttempts(); n < 0 {
		return larder.JobSpec{}, larder.Invalidf("max_attempts: %d is negative; 0 means the queue's default", n)
	}
	spec := larder.JobSpec{MaxAttempts: int(req.GetMaxAttempts())}
	var args any
	var err error
	switch job := req.GetJob().(type) {
	case *larderv1.SubmitJobRequest_Materialize:
		spec.Kind = larder.JobMaterialize
		args, spec.Description, err = j.materializeArgs(job.Materialize)
	case *larderv1.SubmitJobRequest_Score:
		spec.Kind = larder.JobScore
		args, spec.Description, err = j.scoreArgs(job.Score)
	default:
		err = larder.Invalidf("job: one of materialize or score is required")
	}
	if err != nil {
		return larder.JobSpec{}, err
	}
	if spec.Args, err = json.Marshal(args); err != nil {
		return larder.JobSpec{}, err
	}
	return spec, nil
}

// materializeArgs checks a MaterializeJob and returns its arguments and
// its description.
func (j *jobServer) materializeArgs(m *larderv1.MaterializeJob) (larder.MaterializeArgs, string, error) {
	p := j.svc.serving().project
	views := m.GetViews()
	if len(views) == 0 {
		return larder.MaterializeArgs{}, "", larder.Invalidf("materialize.views: at least one view is required%s", knownViews(p))
	}
	for i, name := range views {
		if p.View(name) == nil {
			return larder.MaterializeArgs{}, "", larder.Invalidf("materialize.views[%d]: unknown view %s%s", i, echo(name), knownViews(p))
		}
		if first := slices.Index(views, name); first < i {
			return larder.MaterializeArgs{}, "", larder.Invalidf("materialize.views[%d]: view %q is listed twice (also views[%d])", i, name, first)
		}
	}
	asOf, err := j.asOf("materialize.as_of", m.GetAsOf())
	if err != nil {
		return larder.MaterializeArgs{}, "", err
	}
	args := larder.MaterializeArgs{Views: slices.Clone(views), AsOf: asOf, Trigger: larder.TriggerJob}
	return args, "materialize " + strings.Join(views, ", ") + asOfText(asOf), nil
}

// scoreArgs checks a ScoreJob and returns its arguments and its
// description.
func (j *jobServer) scoreArgs(s *larderv1.ScoreJob) (larder.ScoreArgs, string, error) {
	p := j.svc.serving().project
	var model string
	switch {
	case s.GetRanker() == "" && s.GetView() == "":
		return larder.ScoreArgs{}, "", larder.Invalidf("score: one of ranker or view is required%s%s", knownRankers(p), knownPredictionViews(p))
	case s.GetRanker() != "" && s.GetView() != "":
		return larder.ScoreArgs{}, "", larder.Invalidf("score: ranker %s and view %s are both given; give one of them", echo(s.GetRanker()), echo(s.GetView()))
	case s.GetRanker() != "":
		if p.Ranker(s.GetRanker()) == nil {
			return larder.ScoreArgs{}, "", larder.Invalidf("score.ranker: unknown ranker %s%s", echo(s.GetRanker()), knownRankers(p))
		}
		if s.GetKeyColumn() != "" {
			return larder.ScoreArgs{}, "", larder.Invalidf("score.key_column: applies to a prediction view; for a ranker, set context_column and candidate_column")
		}
		model = "ranker " + s.GetRanker()
	default:
		v := p.View(s.GetView())
		if v == nil {
			return larder.ScoreArgs{}, "", larder.Invalidf("score.view: unknown view %s%s", echo(s.GetView()), knownPredictionViews(p))
		}
		if v.Kind != larder.KindPrediction {
			return larder.ScoreArgs{}, "", larder.Invalidf("score.view: %q is a view of kind %s, which has no model; give a prediction view%s, or a ranker", v.Name, v.Kind, knownPredictionViews(p))
		}
		if s.GetContextColumn() != "" || s.GetCandidateColumn() != "" {
			return larder.ScoreArgs{}, "", larder.Invalidf("score: context_column and candidate_column apply to a ranker; for a prediction view, set key_column")
		}
		model = "view " + v.Name
	}
	switch {
	case s.GetInput() == "":
		return larder.ScoreArgs{}, "", larder.Invalidf("score.input: the Parquet file, folder or glob to score is required")
	case s.GetOutput() == "":
		return larder.ScoreArgs{}, "", larder.Invalidf("score.output: the Parquet file to write is required")
	case s.GetOutput() == s.GetInput():
		return larder.ScoreArgs{}, "", larder.Invalidf("score.output: %s is the input too; write the scores to another file", echo(s.GetOutput()))
	case s.GetBatchSize() < 0:
		return larder.ScoreArgs{}, "", larder.Invalidf("score.batch_size: %d is negative; 0 means 1024", s.GetBatchSize())
	}
	asOf, err := j.asOf("score.as_of", s.GetAsOf())
	if err != nil {
		return larder.ScoreArgs{}, "", err
	}
	args := larder.ScoreArgs{
		Ranker:          s.GetRanker(),
		View:            s.GetView(),
		Input:           s.GetInput(),
		Output:          s.GetOutput(),
		AsOf:            asOf,
		ContextColumn:   s.GetContextColumn(),
		CandidateColumn: s.GetCandidateColumn(),
		KeyColumn:       s.GetKeyColumn(),
		BatchSize:       int(s.GetBatchSize()),
	}
	return args, "score " + args.Input + " with " + model + " into " + args.Output + asOfText(asOf), nil
}

// asOf checks the as_of of a job, named field in errors: unset is the
// server's time (the job's submission), so that every attempt and shard
// computes one instant; more than maxAsOfAhead past the server's clock is
// refused.
func (j *jobServer) asOf(field string, ts *timestamppb.Timestamp) (time.Time, error) {
	if ts == nil {
		return j.svc.now().UTC().Truncate(time.Microsecond), nil
	}
	if err := ts.CheckValid(); err != nil {
		return time.Time{}, larder.Invalidf("%s: %v", field, err)
	}
	t := ts.AsTime()
	if now := j.svc.now(); t.After(now.Add(maxAsOfAhead)) {
		return time.Time{}, larder.Invalidf("%s: %s is in the future (the server's time is %s); data after now does not exist yet: leave as_of unset for the time of submission",
			field, formatTime(t), formatTime(now))
	}
	return t, nil
}

// jobFilter checks a ListJobsRequest and converts it to the queue's filter.
func jobFilter(req *larderv1.ListJobsRequest) (larder.JobFilter, error) {
	f := larder.JobFilter{Kind: larder.JobKind(req.GetKind()), Limit: int(req.GetLimit())}
	if req.GetState() != larderv1.JobState_JOB_STATE_UNSPECIFIED {
		f.State = jobStateFromProto(req.GetState())
		if f.State == "" {
			return larder.JobFilter{}, larder.Invalidf("state: unknown job state %d", req.GetState())
		}
	}
	if f.Kind != "" && !slices.Contains(jobKinds, f.Kind) {
		return larder.JobFilter{}, larder.Invalidf("kind: unknown job kind %s (kinds: %s)", echo(string(f.Kind)), joinKinds(jobKinds))
	}
	switch {
	case f.Limit == 0:
		f.Limit = defaultJobsLimit
	case f.Limit < 0 || f.Limit > maxJobsLimit:
		return larder.JobFilter{}, larder.Invalidf("limit: %d is out of range: from 1 to %d, or 0 for %d", f.Limit, maxJobsLimit, defaultJobsLimit)
	}
	return f, nil
}

// jobKinds are the kinds a ListJobs request may filter by.
var jobKinds = []larder.JobKind{larder.JobMaterialize, larder.JobShard, larder.JobScore}

func joinKinds(kinds []larder.JobKind) string {
	names := make([]string, len(kinds))
	for i, k := range kinds {
		names[i] = string(k)
	}
	return strings.Join(names, ", ")
}

// jobStates pairs the domain's job states with the API's, in order.
var jobStates = []struct {
	domain larder.JobState
	proto  larderv1.JobState
}{
	{larder.JobQueued, larderv1.JobState_JOB_STATE_QUEUED},
	{larder.JobRunning, larderv1.JobState_JOB_STATE_RUNNING},
	{larder.JobRetrying, larderv1.JobState_JOB_STATE_RETRYING},
	{larder.JobWaiting, larderv1.JobState_JOB_STATE_WAITING},
	{larder.JobSucceeded, larderv1.JobState_JOB_STATE_SUCCEEDED},
	{larder.JobFailed, larderv1.JobState_JOB_STATE_FAILED},
	{larder.JobCancelled, larderv1.JobState_JOB_STATE_CANCELLED},
}

// jobStateToProto converts s; a state this server does not know is
// JOB_STATE_UNSPECIFIED.
func jobStateToProto(s larder.JobState) larderv1.JobState {
	for _, st := range jobStates {
		if st.domain == s {
			return st.proto
		}
	}
	return larderv1.JobState_JOB_STATE_UNSPECIFIED
}

// jobStateFromProto converts s; JOB_STATE_UNSPECIFIED and values this
// server does not know are "".
func jobStateFromProto(s larderv1.JobState) larder.JobState {
	for _, st := range jobStates {
		if st.proto == s {
			return st.domain
		}
	}
	return ""
}

// jobToProto converts a job as the queue keeps it. Its arguments and result
// are decoded by kind; a kind this server does not know, or JSON it cannot
// decode (logged), leaves them unset: the rest of the job is still worth
// showing.
func (j *jobServer) jobToProto(job larder.Job) *larderv1.Job {
	pj := &larderv1.Job{
		Id:            job.ID,
		Kind:          string(job.Kind),
		State:         jobStateToProto(job.State),
		Description:   job.Description,
		Attempts:      int32(job.Attempts),
		MaxAttempts:   int32(job.MaxAttempts),
		Worker:        job.Worker,
		CreatedAt:     timeToProto(job.CreatedAt),
		StartedAt:     timeToProto(job.StartedAt),
		FinishedAt:    timeToProto(job.FinishedAt),
		NextAttemptAt: timeToProto(job.NextAttemptAt),
		LastError:     job.LastError,
		Parent:        job.Parent,
		Children:      job.Children,
	}
	if pg := job.Progress; pg != (larder.JobProgress{}) {
		pj.Progress = &larderv1.JobProgress{Phase: pg.Phase, Done: pg.Done, Total: pg.Total, Unit: pg.Unit}
	}
	if err := setJobArgs(pj, job); err != nil {
		j.svc.logger.Warn("job arguments cannot be read", "job", job.ID, "kind", job.Kind, "err", err)
	}
	if err := setJobResult(pj, job); err != nil {
		j.svc.logger.Warn("job result cannot be read", "job", job.ID, "kind", job.Kind, "err", err)
	}
	return pj
}

// setJobArgs sets pj's arguments from job's, by kind.
func setJobArgs(pj *larderv1.Job, job larder.Job) error {
	if len(job.Args) == 0 {
		return nil
	}
	switch job.Kind {
	case larder.JobMaterialize:
		var a larder.MaterializeArgs
		if err := json.Unmarshal(job.Args, &a); err != nil {
			return err
		}
		pj.Args = &larderv1.Job_Materialize{Materialize: &larderv1.MaterializeJob{Views: a.Views, AsOf: timeToProto(a.AsOf)}}
	case larder.JobShard:
		var a larder.ShardArgs
		if err := json.Unmarshal(job.Args, &a); err != nil {
			return err
		}
		pj.Args = &larderv1.Job_Shard{Shard: &larderv1.ShardJob{
			View: a.View, Generation: a.Generation, Shard: int32(a.Shard), Shards: int32(a.Shards), AsOf: timeToProto(a.AsOf),
		}}
	case larder.JobScore:
		var a larder.ScoreArgs
		if err := json.Unmarshal(job.Args, &a); err != nil {
			return err
		}
		pj.Args = &larderv1.Job_Score{Score: &larderv1.ScoreJob{
			Ranker:          a.Ranker,
			View:            a.View,
			Input:           a.Input,
			Output:          a.Output,
			AsOf:            timeToProto(a.AsOf),
			ContextColumn:   a.ContextColumn,
			CandidateColumn: a.CandidateColumn,
			KeyColumn:       a.KeyColumn,
			BatchSize:       int32(a.BatchSize),
		}}
	}
	return nil
}

// setJobResult sets pj's result from job's, by kind.
func setJobResult(pj *larderv1.Job, job larder.Job) error {
	if len(job.Result) == 0 {
		return nil
	}
	switch job.Kind {
	case larder.JobMaterialize, larder.JobShard:
		var r larder.MaterializeResult
		if err := json.Unmarshal(job.Result, &r); err != nil {
			return err
		}
		pj.Result = &larderv1.Job_MaterializeResult{MaterializeResult: &larderv1.MaterializeJobResult{Generations: inputsToProto(r.Generations)}}
	case larder.JobScore:
		var r larder.ScoreResult
		if err := json.Unmarshal(job.Result, &r); err != nil {
			return err
		}
		pj.Result = &larderv1.Job_ScoreResult{ScoreResult: &larderv1.ScoreJobResult{
			Output: r.Output, Rows: r.Rows, Model: r.Model, Generations: inputsToProto(r.Generations),
		}}
	}
	return nil
}

// asOfText is the end of a job's description: " as of <as_of>", or nothing
// when the job runs as of its start.
func asOfText(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return " as of " + formatTime(t)
}

// formatTime writes t in UTC, RFC 3339, with a fraction of a second only
// when it has one.
func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func knownPredictionViews(p *larder.Project) string {
	names := p.ViewNames(larder.KindPrediction)
	if len(names) == 0 {
		return " (the project has no prediction view)"
	}
	return " (prediction views: " + strings.Join(names, ", ") + ")"
}
