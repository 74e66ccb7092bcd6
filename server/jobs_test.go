package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/larder-dev/larder"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
	"github.com/larder-dev/larder/server"
)

// fakeQueue is a larder.JobQueue in memory. It isolates the JobService's
// handlers from the real queue, which is tested against Redis in its own
// package: it keeps jobs as given, and records what it was asked.
type fakeQueue struct {
	now func() time.Time

	mu      sync.Mutex
	jobs    []larder.Job // in submission order
	specs   []larder.JobSpec
	filters []larder.JobFilter
	err     error // when set, every call fails with it
}

func newFakeQueue(now func() time.Time) *fakeQueue { return &fakeQueue{now: now} }

var _ larder.JobQueue = (*fakeQueue)(nil)

// fakeDefaultAttempts is the fake queue's default for JobSpec.MaxAttempts.
const fakeDefaultAttempts = 3

func (q *fakeQueue) Submit(_ context.Context, spec larder.JobSpec) (larder.Job, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.err != nil {
		return larder.Job{}, q.err
	}
	q.specs = append(q.specs, spec)
	switch spec.Kind {
	case larder.JobMaterialize, larder.JobShard, larder.JobScore:
	default:
		return larder.Job{}, larder.Invalidf("unknown job kind %q", spec.Kind)
	}
	job := larder.Job{ID: fmt.Sprintf("j-%d", len(q.jobs)+1), JobSpec: spec, State: larder.JobQueued, CreatedAt: q.now()}
	if job.MaxAttempts == 0 {
		job.MaxAttempts = fakeDefaultAttempts
	}
	q.jobs = append(q.jobs, job)
	return job, nil
}

func (q *fakeQueue) Job(_ context.Context, id string) (larder.Job, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.err != nil {
		return larder.Job{}, q.err
	}
	i, err := q.find(id)
	if err != nil {
		return larder.Job{}, err
	}
	return q.jobs[i], nil
}

func (q *fakeQueue) Jobs(_ context.Context, f larder.JobFilter) ([]larder.Job, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.filters = append(q.filters, f)
	if q.err != nil {
		return nil, q.err
	}
	var out []larder.Job
	for i := len(q.jobs) - 1; i >= 0 && len(out) < f.Limit; i-- {
		j := q.jobs[i]
		if (f.State == "" || j.State == f.State) && (f.Kind == "" || j.Kind == f.Kind) {
			out = append(out, j)
		}
	}
	return out, nil
}

func (q *fakeQueue) Cancel(_ context.Context, id string) (larder.Job, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.err != nil {
		return larder.Job{}, q.err
	}
	i, err := q.find(id)
	if err != nil {
		return larder.Job{}, err
	}
	if j := &q.jobs[i]; !j.State.Done() {
		j.State, j.FinishedAt, j.LastError = larder.JobCancelled, q.now(), "cancelled"
	}
	return q.jobs[i], nil
}

// put adds job as it is, for the tests of the conversion.
func (q *fakeQueue) put(job larder.Job) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.jobs = append(q.jobs, job)
}

func (q *fakeQueue) find(id string) (int, error) {
	for i, j := range q.jobs {
		if j.ID == id {
			return i, nil
		}
	}
	return 0, fmt.Errorf("job %q: %w", id, larder.ErrNotFound)
}

func (q *fakeQueue) lastSpec() (larder.JobSpec, int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.specs) == 0 {
		return larder.JobSpec{}, 0
	}
	return q.specs[len(q.specs)-1], len(q.specs)
}

func (q *fakeQueue) setErr(err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.err = err
}

// jobsT0 is the server's time in the JobService tests.
var jobsT0 = time.Date(2026, 12, 1, 3, 30, 0, 0, time.UTC)

// withPrediction adds the prediction view item_prior (over item_info) to the
// test project, for score jobs with a view.
func withPrediction(p *larder.Project) {
	p.Views = append(p.Views, &larder.View{
		Name: "item_prior", Kind: larder.KindPrediction, Entity: "item",
		Prediction: &larder.Prediction{Model: "prior.onnx", Inputs: []larder.RankerInput{{Ref: "item_info:price"}}},
		Features:   []larder.Feature{{Name: "p_click", Type: larder.TypeFloat32}},
	})
}

// newJobService returns a Service of the test project with item_prior,
// over queue q (none when q is nil), at jobsT0.
func newJobService(tb testing.TB, q larder.JobQueue, edit func(*server.Config)) *server.Service {
	tb.Helper()
	cfg := opsConfig(tb, withPrediction)
	cfg.Models = map[string]server.Model{"reco": newFakeModel("v1", 1)}
	cfg.Now = newClock(jobsT0).Now
	cfg.Jobs = q
	if edit != nil {
		edit(&cfg)
	}
	svc, err := server.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return svc
}

// jobClient serves svc behind NewGRPC and returns a JobService client.
func jobClient(tb testing.TB, svc *server.Service) larderv1.JobServiceClient {
	tb.Helper()
	return larderv1.NewJobServiceClient(serveGRPC(tb, tb.Context(), server.NewGRPC(svc, nil)).conn)
}

func ts(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }

func materializeReq(asOf *timestamppb.Timestamp, views ...string) *larderv1.SubmitJobRequest {
	return &larderv1.SubmitJobRequest{Job: &larderv1.SubmitJobRequest_Materialize{Materialize: &larderv1.MaterializeJob{Views: views, AsOf: asOf}}}
}

func scoreReq(s *larderv1.ScoreJob) *larderv1.SubmitJobRequest {
	return &larderv1.SubmitJobRequest{Job: &larderv1.SubmitJobRequest_Score{Score: s}}
}

// TestSubmitJob submits valid jobs and checks what reaches the queue (kind,
// arguments as JSON with trigger "job", description, attempts) and what
// comes back, including the arguments read back from the queue's JSON.
func TestSubmitJob(t *testing.T) {
	q := newFakeQueue(func() time.Time { return jobsT0 })
	client := jobClient(t, newJobService(t, q, nil))
	asOf := time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)
	fraction := asOf.Add(123456789 * time.Nanosecond)

	for _, tt := range []struct {
		name     string
		req      *larderv1.SubmitJobRequest
		kind     larder.JobKind
		args     string // the JSON the queue receives
		desc     string
		attempts int
	}{
		{
			name: "materialize as of",
			req:  materializeReq(ts(asOf), "user_stats", "user_profile"),
			kind: larder.JobMaterialize,
			args: `{"views":["user_stats","user_profile"],"as_of":"2026-12-01T03:00:00Z","trigger":"job"}`,
			desc: "materialize user_stats, user_profile as of 2026-12-01T03:00:00Z",
		},
		{
			name: "materialize as of its submission, with attempts",
			req: &larderv1.SubmitJobRequest{
				Job:         &larderv1.SubmitJobRequest_Materialize{Materialize: &larderv1.MaterializeJob{Views: []string{"item_info"}}},
				MaxAttempts: 5,
			},
			kind:     larder.JobMaterialize,
			args:     `{"views":["item_info"],"as_of":"2026-12-01T03:30:00Z","trigger":"job"}`,
			desc:     "materialize item_info as of 2026-12-01T03:30:00Z",
			attempts: 5,
		},
		{
			name: "materialize within a minute ahead of the server",
			req:  materializeReq(ts(jobsT0.Add(59*time.Second)), "user_stats"),
			kind: larder.JobMaterialize,
			args: `{"views":["user_stats"],"as_of":"2026-12-01T03:30:59Z","trigger":"job"}`,
			desc: "materialize user_stats as of 2026-12-01T03:30:59Z",
		},
		{
			name: "score with a ranker",
			req: scoreReq(&larderv1.ScoreJob{
				Ranker: "reco", Input: "data/in.parquet", Output: "out.parquet", AsOf: ts(fraction),
				ContextColumn: "uid", CandidateColumn: "iid", BatchSize: 256,
			}),
			kind: larder.JobScore,
			args: `{"ranker":"reco","input":"data/in.parquet","output":"out.parquet","as_of":"2026-12-01T03:00:00.123456789Z",` +
				`"context_column":"uid","candidate_column":"iid","batch_size":256}`,
			desc: "score data/in.parquet with ranker reco into out.parquet as of 2026-12-01T03:00:00.123456789Z",
		},
		{
			name: "score with a prediction view",
			req:  scoreReq(&larderv1.ScoreJob{View: "item_prior", Input: "items/*.parquet", Output: "/tmp/scored.parquet", KeyColumn: "sku"}),
			kind: larder.JobScore,
			args: `{"view":"item_prior","input":"items/*.parquet","output":"/tmp/scored.parquet","as_of":"2026-12-01T03:30:00Z","key_column":"sku"}`,
			desc: "score items/*.parquet with view item_prior into /tmp/scored.parquet as of 2026-12-01T03:30:00Z",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := client.SubmitJob(t.Context(), tt.req)
			if err != nil {
				t.Fatal(err)
			}
			spec, _ := q.lastSpec()
			if spec.Kind != tt.kind || string(spec.Args) != tt.args || spec.Description != tt.desc || spec.MaxAttempts != tt.attempts || spec.Parent != "" {
				t.Errorf("the queue got %s %s %q attempts %d parent %q\nwant %s %s %q attempts %d",
					spec.Kind, spec.Args, spec.Description, spec.MaxAttempts, spec.Parent, tt.kind, tt.args, tt.desc, tt.attempts)
			}
			job := resp.GetJob()
			wantAttempts := int32(tt.attempts)
			if wantAttempts == 0 {
				wantAttempts = fakeDefaultAttempts
			}
			if job.GetId() == "" || job.GetKind() != string(tt.kind) || job.GetState() != larderv1.JobState_JOB_STATE_QUEUED ||
				job.GetDescription() != tt.desc || job.GetMaxAttempts() != wantAttempts || !job.GetCreatedAt().AsTime().Equal(jobsT0) {
				t.Errorf("SubmitJob returned %v", job)
			}
			// The arguments come back as they were submitted, through the
			// queue's JSON.
			var sent, got proto.Message
			switch j := tt.req.GetJob().(type) {
			case *larderv1.SubmitJobRequest_Materialize:
				sent, got = j.Materialize, job.GetMaterialize()
			case *larderv1.SubmitJobRequest_Score:
				sent, got = j.Score, job.GetScore()
			}
			// An unset as_of comes back as the submission's instant.
			sent = proto.Clone(sent)
			switch m := sent.(type) {
			case *larderv1.MaterializeJob:
				if m.AsOf == nil {
					m.AsOf = ts(jobsT0)
				}
			case *larderv1.ScoreJob:
				if m.AsOf == nil {
					m.AsOf = ts(jobsT0)
				}
			}
			if !proto.Equal(got, sent) {
				t.Errorf("the job's arguments are %v, want %v as submitted", got, sent)
			}
			again, err := client.GetJob(t.Context(), &larderv1.GetJobRequest{Id: job.GetId()})
			if err != nil || !proto.Equal(again.GetJob(), job) {
				t.Errorf("GetJob = %v, %v; want %v", again.GetJob(), err, job)
			}
		})
	}
}

// TestSubmitJobInvalid checks every refusal of SubmitJob: its code, its
// message, and that nothing reached the queue.
func TestSubmitJobInvalid(t *testing.T) {
	q := newFakeQueue(func() time.Time { return jobsT0 })
	client := jobClient(t, newJobService(t, q, nil))
	const views = "(the server's project srvtest has views: user_profile, user_stats, item_info, user_never, item_prior)"
	score := func(edit func(*larderv1.ScoreJob)) *larderv1.SubmitJobRequest {
		s := &larderv1.ScoreJob{Ranker: "reco", Input: "in.parquet", Output: "out.parquet"}
		edit(s)
		return scoreReq(s)
	}
	for _, tt := range []struct {
		name string
		req  *larderv1.SubmitJobRequest
		msgs []string
	}{
		{"no job", &larderv1.SubmitJobRequest{}, []string{"job: one of materialize or score is required"}},
		{"no views", materializeReq(nil), []string{"materialize.views: at least one view is required " + views}},
		{"unknown view", materializeReq(nil, "user_stats", "nope"), []string{`materialize.views[1]: unknown view "nope" ` + views}},
		{"a view twice", materializeReq(nil, "user_stats", "item_info", "user_stats"), []string{`materialize.views[2]: view "user_stats" is listed twice (also views[0])`}},
		{"as of the future", materializeReq(ts(jobsT0.Add(61*time.Second)), "user_stats"),
			[]string{"materialize.as_of: 2026-12-01T03:31:01Z is in the future (the server's time is 2026-12-01T03:30:00Z)", "leave as_of unset"}},
		{"an invalid as of", materializeReq(&timestamppb.Timestamp{Nanos: -1}, "user_stats"), []string{"materialize.as_of: "}},
		{"negative attempts", &larderv1.SubmitJobRequest{Job: materializeReq(nil, "user_stats").Job, MaxAttempts: -1},
			[]string{"max_attempts: -1 is negative; 0 means the queue's default"}},
		{"no model", score(func(s *larderv1.ScoreJob) { s.Ranker = "" }),
			[]string{"score: one of ranker or view is required (the server's project srvtest has rankers: reco) (prediction views: item_prior)"}},
		{"two models", score(func(s *larderv1.ScoreJob) { s.View = "item_prior" }),
			[]string{`score: ranker "reco" and view "item_prior" are both given; give one of them`}},
		{"unknown ranker", score(func(s *larderv1.ScoreJob) { s.Ranker = "nope" }), []string{`score.ranker: unknown ranker "nope" (the server's project srvtest has rankers: reco)`}},
		{"unknown view", score(func(s *larderv1.ScoreJob) { s.Ranker, s.View = "", "nope" }),
			[]string{`score.view: unknown view "nope" (prediction views: item_prior)`}},
		{"a view without a model", score(func(s *larderv1.ScoreJob) { s.Ranker, s.View = "", "item_info" }),
			[]string{`score.view: "item_info" is a view of kind latest, which has no model; give a prediction view (prediction views: item_prior), or a ranker`}},
		{"a key column for a ranker", score(func(s *larderv1.ScoreJob) { s.KeyColumn = "k" }),
			[]string{"score.key_column: applies to a prediction view; for a ranker, set context_column and candidate_column"}},
		{"a context column for a view", score(func(s *larderv1.ScoreJob) { s.Ranker, s.View, s.ContextColumn = "", "item_prior", "u" }),
			[]string{"score: context_column and candidate_column apply to a ranker; for a prediction view, set key_column"}},
		{"a candidate column for a view", score(func(s *larderv1.ScoreJob) { s.Ranker, s.View, s.CandidateColumn = "", "item_prior", "i" }),
			[]string{"context_column and candidate_column apply to a ranker"}},
		{"no input", score(func(s *larderv1.ScoreJob) { s.Input = "" }), []string{"score.input: the Parquet file, folder or glob to score is required"}},
		{"no output", score(func(s *larderv1.ScoreJob) { s.Output = "" }), []string{"score.output: the Parquet file to write is required"}},
		{"output over input", score(func(s *larderv1.ScoreJob) { s.Output = "in.parquet" }),
			[]string{`score.output: "in.parquet" is the input too; write the scores to another file`}},
		{"negative batch", score(func(s *larderv1.ScoreJob) { s.BatchSize = -2 }), []string{"score.batch_size: -2 is negative; 0 means 1024"}},
		// A name of a megabyte comes back shortened.
		{"unknown view of a megabyte", materializeReq(nil, strings.Repeat("v", 1<<20)),
			[]string{`materialize.views[0]: unknown view "` + strings.Repeat("v", 100) + `"… (1048576 bytes) ` + views}},
		{"unknown ranker of a megabyte", score(func(s *larderv1.ScoreJob) { s.Ranker = strings.Repeat("r", 1<<20) + "\xff" }),
			[]string{`score.ranker: unknown ranker "` + strings.Repeat("r", 100) + `"… (1048577 bytes) (the server's project srvtest has rankers: reco)`}},
		{"a score as of the future", score(func(s *larderv1.ScoreJob) { s.AsOf = ts(jobsT0.Add(time.Hour)) }),
			[]string{"score.as_of: 2026-12-01T04:30:00Z is in the future"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := client.SubmitJob(t.Context(), tt.req)
			wantCode(t, err, codes.InvalidArgument, tt.msgs...)
			if _, n := q.lastSpec(); n != 0 {
				t.Errorf("a refused job reached the queue")
			}
		})
	}
}

// TestJobServiceErrors checks that the queue's errors map through the one
// table: NOT_FOUND, INVALID_ARGUMENT, UNAVAILABLE, and the caller's own
// deadline.
func TestJobServiceErrors(t *testing.T) {
	q := newFakeQueue(func() time.Time { return jobsT0 })
	client := jobClient(t, newJobService(t, q, nil))
	ctx := t.Context()

	_, err := client.GetJob(ctx, &larderv1.GetJobRequest{Id: "j-404"})
	wantCode(t, err, codes.NotFound, `job "j-404": not found`)
	_, err = client.CancelJob(ctx, &larderv1.CancelJobRequest{Id: "j-404"})
	wantCode(t, err, codes.NotFound, `job "j-404": not found`)
	_, err = client.GetJob(ctx, &larderv1.GetJobRequest{Id: strings.Repeat("j", 1<<20)})
	wantCode(t, err, codes.NotFound, `job "`+strings.Repeat("j", 100)+`"… (1048576 bytes): not found`)
	if n := len(status.Convert(err).Message()); n > 200 {
		t.Errorf("NOT_FOUND of an id of a megabyte: a message of %d bytes", n)
	}
	_, err = client.GetJob(ctx, &larderv1.GetJobRequest{})
	wantCode(t, err, codes.InvalidArgument, "id: a job id is required")
	_, err = client.CancelJob(ctx, &larderv1.CancelJobRequest{})
	wantCode(t, err, codes.InvalidArgument, "id: a job id is required")

	q.setErr(larder.Invalidf("the queue refuses"))
	_, err = client.SubmitJob(ctx, materializeReq(nil, "user_stats"))
	wantCode(t, err, codes.InvalidArgument, "the queue refuses")

	q.setErr(fmt.Errorf("queue: submit: %w", larder.ErrUnavailable))
	_, err = client.SubmitJob(ctx, materializeReq(nil, "user_stats"))
	wantCode(t, err, codes.Unavailable, "queue: submit: unavailable")
	_, err = client.GetJob(ctx, &larderv1.GetJobRequest{Id: "j-1"})
	wantCode(t, err, codes.Unavailable)
	_, err = client.ListJobs(ctx, &larderv1.ListJobsRequest{})
	wantCode(t, err, codes.Unavailable)
	_, err = client.CancelJob(ctx, &larderv1.CancelJobRequest{Id: "j-1"})
	wantCode(t, err, codes.Unavailable)

	// A deadline of the queue's own passes through as a deadline.
	q.setErr(fmt.Errorf("queue: get job: %w", context.DeadlineExceeded))
	_, err = client.GetJob(ctx, &larderv1.GetJobRequest{Id: "j-1"})
	wantCode(t, err, codes.DeadlineExceeded, "queue: get job: context deadline exceeded")
}

// TestListJobs checks the filters the queue is given, their refusals, and
// the order of the answer.
func TestListJobs(t *testing.T) {
	q := newFakeQueue(func() time.Time { return jobsT0 })
	client := jobClient(t, newJobService(t, q, nil))
	ctx := t.Context()
	for _, req := range []*larderv1.SubmitJobRequest{
		materializeReq(nil, "user_stats"),
		scoreReq(&larderv1.ScoreJob{Ranker: "reco", Input: "a.parquet", Output: "b.parquet"}),
		materializeReq(nil, "item_info"),
	} {
		if _, err := client.SubmitJob(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := client.CancelJob(ctx, &larderv1.CancelJobRequest{Id: "j-2"}); err != nil {
		t.Fatal(err)
	}

	for _, tt := range []struct {
		name   string
		req    *larderv1.ListJobsRequest
		filter larder.JobFilter
		ids    []string
	}{
		{"all", &larderv1.ListJobsRequest{}, larder.JobFilter{Limit: 100}, []string{"j-3", "j-2", "j-1"}},
		{"by state", &larderv1.ListJobsRequest{State: larderv1.JobState_JOB_STATE_QUEUED},
			larder.JobFilter{State: larder.JobQueued, Limit: 100}, []string{"j-3", "j-1"}},
		{"by kind", &larderv1.ListJobsRequest{Kind: "score"}, larder.JobFilter{Kind: larder.JobScore, Limit: 100}, []string{"j-2"}},
		{"shards", &larderv1.ListJobsRequest{Kind: "materialize-shard"}, larder.JobFilter{Kind: larder.JobShard, Limit: 100}, nil},
		{"by state and kind", &larderv1.ListJobsRequest{State: larderv1.JobState_JOB_STATE_CANCELLED, Kind: "materialize"},
			larder.JobFilter{State: larder.JobCancelled, Kind: larder.JobMaterialize, Limit: 100}, nil},
		{"limited", &larderv1.ListJobsRequest{Limit: 2}, larder.JobFilter{Limit: 2}, []string{"j-3", "j-2"}},
		{"the most", &larderv1.ListJobsRequest{Limit: 1000}, larder.JobFilter{Limit: 1000}, []string{"j-3", "j-2", "j-1"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := client.ListJobs(ctx, tt.req)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, j := range resp.GetJobs() {
				ids = append(ids, j.GetId())
			}
			if !slices.Equal(ids, tt.ids) {
				t.Errorf("got jobs %v, want %v", ids, tt.ids)
			}
			q.mu.Lock()
			got := q.filters[len(q.filters)-1]
			q.mu.Unlock()
			if got != tt.filter {
				t.Errorf("the queue was asked for %+v, want %+v", got, tt.filter)
			}
		})
	}

	for _, tt := range []struct {
		name string
		req  *larderv1.ListJobsRequest
		msg  string
	}{
		{"unknown state", &larderv1.ListJobsRequest{State: 99}, "state: unknown job state 99"},
		{"unknown kind", &larderv1.ListJobsRequest{Kind: "export"}, `kind: unknown job kind "export" (kinds: materialize, materialize-shard, score)`},
		{"negative limit", &larderv1.ListJobsRequest{Limit: -1}, "limit: -1 is out of range: from 1 to 1000, or 0 for 100"},
		{"limit too high", &larderv1.ListJobsRequest{Limit: 1001}, "limit: 1001 is out of range"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := client.ListJobs(ctx, tt.req)
			wantCode(t, err, codes.InvalidArgument, tt.msg)
		})
	}
}

// TestCancelJob cancels a queued job, then cancels it again: a done job
// comes back unchanged.
func TestCancelJob(t *testing.T) {
	now := jobsT0
	q := newFakeQueue(func() time.Time { return now })
	client := jobClient(t, newJobService(t, q, nil))
	ctx := t.Context()
	sub, err := client.SubmitJob(ctx, materializeReq(nil, "user_stats"))
	if err != nil {
		t.Fatal(err)
	}
	now = jobsT0.Add(time.Minute)
	resp, err := client.CancelJob(ctx, &larderv1.CancelJobRequest{Id: sub.GetJob().GetId()})
	if err != nil {
		t.Fatal(err)
	}
	cancelled := resp.GetJob()
	if cancelled.GetState() != larderv1.JobState_JOB_STATE_CANCELLED || !cancelled.GetFinishedAt().AsTime().Equal(now) || cancelled.GetLastError() != "cancelled" {
		t.Errorf("CancelJob returned %v, want it cancelled at %s", cancelled, now)
	}
	now = jobsT0.Add(time.Hour)
	again, err := client.CancelJob(ctx, &larderv1.CancelJobRequest{Id: sub.GetJob().GetId()})
	if err != nil || !proto.Equal(again.GetJob(), cancelled) {
		t.Errorf("CancelJob of a cancelled job = %v, %v; want it unchanged: %v", again.GetJob(), err, cancelled)
	}
}

// TestJobConversion stores jobs of every kind with every field set, and
// jobs the server cannot fully read, and checks each as GetJob returns it.
// Every field of Job and of the messages it holds must be set in one of the
// cases, so that a field added to the API without a conversion fails here.
func TestJobConversion(t *testing.T) {
	q := newFakeQueue(func() time.Time { return jobsT0 })
	logs := &syncBuffer{}
	svc := newJobService(t, q, func(cfg *server.Config) { cfg.Logger = slog.New(slog.NewTextHandler(logs, nil)) })
	client := jobClient(t, svc)

	at := func(min int) time.Time { return jobsT0.Add(time.Duration(min) * time.Minute) }
	asOf := time.Date(2026, 12, 1, 3, 0, 0, 500, time.UTC)
	mustJSON := func(v any) json.RawMessage {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	gens := []larder.InputGeneration{{View: "user_stats", Generation: 42, AsOf: asOf}, {View: "item_info", Generation: 7}}
	protoGens := []*larderv1.InputGeneration{{View: "user_stats", Generation: 42, AsOf: ts(asOf)}, {View: "item_info", Generation: 7}}

	for _, tt := range []struct {
		name string
		job  larder.Job
		want *larderv1.Job
	}{
		{
			name: "materialize, waiting for its shards",
			job: larder.Job{
				ID: "m-1",
				JobSpec: larder.JobSpec{
					Kind:        larder.JobMaterialize,
					Args:        mustJSON(larder.MaterializeArgs{Views: []string{"user_stats", "item_info"}, AsOf: asOf, Trigger: larder.TriggerSchedule, Tick: asOf}),
					Description: "materialize user_stats, item_info as of 2026-12-01T03:00:00.0000005Z",
					MaxAttempts: 4,
				},
				State:         larder.JobWaiting,
				Attempts:      2,
				Progress:      larder.JobProgress{Phase: "write", Done: 3, Total: 8, Unit: "shards"},
				Worker:        "w1:4312",
				CreatedAt:     at(1),
				StartedAt:     at(2),
				NextAttemptAt: at(3),
				LastError:     "attempt 1: redis: connection refused",
				Children:      []string{"s-1", "s-2"},
			},
			want: &larderv1.Job{
				Id:            "m-1",
				Kind:          "materialize",
				State:         larderv1.JobState_JOB_STATE_WAITING,
				Description:   "materialize user_stats, item_info as of 2026-12-01T03:00:00.0000005Z",
				Attempts:      2,
				MaxAttempts:   4,
				Progress:      &larderv1.JobProgress{Phase: "write", Done: 3, Total: 8, Unit: "shards"},
				Worker:        "w1:4312",
				CreatedAt:     ts(at(1)),
				StartedAt:     ts(at(2)),
				NextAttemptAt: ts(at(3)),
				LastError:     "attempt 1: redis: connection refused",
				Children:      []string{"s-1", "s-2"},
				Args:          &larderv1.Job_Materialize{Materialize: &larderv1.MaterializeJob{Views: []string{"user_stats", "item_info"}, AsOf: ts(asOf)}},
			},
		},
		{
			name: "a shard, succeeded",
			job: larder.Job{
				ID: "s-1",
				JobSpec: larder.JobSpec{
					Kind:   larder.JobShard,
					Args:   mustJSON(larder.ShardArgs{View: "user_stats", Generation: 42, Shard: 1, Shards: 8, AsOf: asOf, Token: 9, Owner: "w1", Then: []string{"x"}}),
					Parent: "m-1",
				},
				State:      larder.JobSucceeded,
				Attempts:   1,
				CreatedAt:  at(1),
				StartedAt:  at(2),
				FinishedAt: at(4),
				Result:     mustJSON(larder.MaterializeResult{Generations: gens}),
			},
			want: &larderv1.Job{
				Id:         "s-1",
				Kind:       "materialize-shard",
				State:      larderv1.JobState_JOB_STATE_SUCCEEDED,
				Attempts:   1,
				CreatedAt:  ts(at(1)),
				StartedAt:  ts(at(2)),
				FinishedAt: ts(at(4)),
				Parent:     "m-1",
				Args:       &larderv1.Job_Shard{Shard: &larderv1.ShardJob{View: "user_stats", Generation: 42, Shard: 1, Shards: 8, AsOf: ts(asOf)}},
				Result:     &larderv1.Job_MaterializeResult{MaterializeResult: &larderv1.MaterializeJobResult{Generations: protoGens}},
			},
		},
		{
			name: "score, succeeded",
			job: larder.Job{
				ID: "c-1",
				JobSpec: larder.JobSpec{
					Kind: larder.JobScore,
					Args: mustJSON(larder.ScoreArgs{Ranker: "reco", View: "item_prior", Input: "in", Output: "out", AsOf: asOf,
						ContextColumn: "u", CandidateColumn: "i", KeyColumn: "k", BatchSize: 64}),
				},
				State:    larder.JobSucceeded,
				Attempts: 1,
				Result:   mustJSON(larder.ScoreResult{Output: "/data/out", Rows: 1200, Model: "sha256:0123456789ab", Generations: gens}),
			},
			want: &larderv1.Job{
				Id:       "c-1",
				Kind:     "score",
				State:    larderv1.JobState_JOB_STATE_SUCCEEDED,
				Attempts: 1,
				Args: &larderv1.Job_Score{Score: &larderv1.ScoreJob{Ranker: "reco", View: "item_prior", Input: "in", Output: "out", AsOf: ts(asOf),
					ContextColumn: "u", CandidateColumn: "i", KeyColumn: "k", BatchSize: 64}},
				Result: &larderv1.Job_ScoreResult{ScoreResult: &larderv1.ScoreJobResult{Output: "/data/out", Rows: 1200, Model: "sha256:0123456789ab", Generations: protoGens}},
			},
		},
		{
			name: "a kind and a state this server does not know",
			job: larder.Job{
				ID:      "x-1",
				JobSpec: larder.JobSpec{Kind: "export", Args: json.RawMessage(`{"to":"s3://b"}`), Description: "export"},
				State:   "paused",
				Result:  json.RawMessage(`{"files":3}`),
			},
			want: &larderv1.Job{Id: "x-1", Kind: "export", Description: "export", State: larderv1.JobState_JOB_STATE_UNSPECIFIED},
		},
		{
			name: "arguments and result that do not decode",
			job: larder.Job{
				ID:      "m-2",
				JobSpec: larder.JobSpec{Kind: larder.JobMaterialize, Args: json.RawMessage(`{"views":"user_stats"}`)},
				State:   larder.JobFailed,
				Result:  json.RawMessage(`[`),
			},
			want: &larderv1.Job{Id: "m-2", Kind: "materialize", State: larderv1.JobState_JOB_STATE_FAILED},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			q.put(tt.job)
			resp, err := client.GetJob(t.Context(), &larderv1.GetJobRequest{Id: tt.job.ID})
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(resp.GetJob(), tt.want) {
				t.Errorf("got  %v\nwant %v", resp.GetJob(), tt.want)
			}
		})
	}
	for _, line := range []string{`msg="job arguments cannot be read" job=m-2 kind=materialize`, `msg="job result cannot be read" job=m-2`} {
		if !strings.Contains(logs.String(), line) {
			t.Errorf("the log has no %q:\n%s", line, logs.String())
		}
	}

	t.Run("every field", func(t *testing.T) {
		resp, err := client.ListJobs(t.Context(), &larderv1.ListJobsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		set := map[protoreflect.FullName]bool{}
		for _, j := range resp.GetJobs() {
			populated(j.ProtoReflect(), set)
		}
		var unset []string
		for _, name := range allFields((&larderv1.Job{}).ProtoReflect().Descriptor(), map[protoreflect.FullName]bool{}) {
			if !set[name] {
				unset = append(unset, string(name))
			}
		}
		if len(unset) > 0 {
			t.Errorf("no case sets %v: convert them and add them to a case", unset)
		}
	})

	t.Run("all states", func(t *testing.T) {
		for i, s := range larder.JobStates() {
			id := fmt.Sprintf("state-%d", i)
			q.put(larder.Job{ID: id, JobSpec: larder.JobSpec{Kind: larder.JobScore}, State: s})
			resp, err := client.GetJob(t.Context(), &larderv1.GetJobRequest{Id: id})
			if err != nil {
				t.Fatal(err)
			}
			got := resp.GetJob().GetState()
			if got == larderv1.JobState_JOB_STATE_UNSPECIFIED || got.String() != "JOB_STATE_"+strings.ToUpper(string(s)) {
				t.Errorf("state %s is sent as %s", s, got)
			}
			lst, err := client.ListJobs(t.Context(), &larderv1.ListJobsRequest{State: got, Limit: 1})
			if err != nil || len(lst.GetJobs()) != 1 || lst.GetJobs()[0].GetId() != id {
				t.Errorf("ListJobs of state %s = %v, %v; want %s", got, lst.GetJobs(), err, id)
			}
		}
	})
}

// populated adds to set the full name of every field set in m and in the
// messages it holds, except inside well-known types.
func populated(m protoreflect.Message, set map[protoreflect.FullName]bool) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		set[fd.FullName()] = true
		if fd.Message() == nil || wellKnown(fd.Message()) {
			return true
		}
		if fd.IsList() {
			for i := 0; i < v.List().Len(); i++ {
				populated(v.List().Get(i).Message(), set)
			}
			return true
		}
		populated(v.Message(), set)
		return true
	})
}

// allFields returns the full names of the fields of md and of the messages
// it holds, except inside well-known types, sorted.
func allFields(md protoreflect.MessageDescriptor, seen map[protoreflect.FullName]bool) []protoreflect.FullName {
	if seen[md.FullName()] {
		return nil
	}
	seen[md.FullName()] = true
	var names []protoreflect.FullName
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		names = append(names, fd.FullName())
		if fd.Message() != nil && !wellKnown(fd.Message()) {
			names = append(names, allFields(fd.Message(), seen)...)
		}
	}
	sort.Slice(names, func(i, j int) bool { return names[i] < names[j] })
	return names
}

func wellKnown(md protoreflect.MessageDescriptor) bool {
	return md.ParentFile().Package() == "google.protobuf"
}

// TestJobServiceListeners checks where the JobService is served: next to
// the AdminService (NewGRPC, NewAdminGRPC) when the Service has a queue,
// nowhere without one, and never on the public listener of a split.
func TestJobServiceListeners(t *testing.T) {
	jobs := larderv1.JobService_ServiceDesc.ServiceName
	feature := larderv1.FeatureService_ServiceDesc.ServiceName
	admin := larderv1.AdminService_ServiceDesc.ServiceName
	withQueue := newJobService(t, newFakeQueue(func() time.Time { return jobsT0 }), nil)
	withoutQueue := newJobService(t, nil, nil)
	ctx := t.Context()

	for _, tt := range []struct {
		name   string
		grpc   *server.GRPC
		served bool
		other  string // a service the server carries
	}{
		{"NewGRPC with a queue", server.NewGRPC(withQueue, nil), true, feature},
		{"NewAdminGRPC with a queue", server.NewAdminGRPC(withQueue, nil), true, admin},
		{"NewFeatureGRPC with a queue", server.NewFeatureGRPC(withQueue, nil), false, feature},
		{"NewGRPC without a queue", server.NewGRPC(withoutQueue, nil), false, feature},
		{"NewAdminGRPC without a queue", server.NewAdminGRPC(withoutQueue, nil), false, admin},
	} {
		t.Run(tt.name, func(t *testing.T) {
			conn := serveGRPC(t, ctx, tt.grpc).conn
			_, err := larderv1.NewJobServiceClient(conn).ListJobs(ctx, &larderv1.ListJobsRequest{})
			if tt.served {
				if err != nil {
					t.Errorf("ListJobs: %v", err)
				}
				checkHealth(t, conn, jobs, "larder.v1.NoSuchService")
				checkReflection(t, conn, jobs, "larder.v1.NoSuchService")
				return
			}
			wantCode(t, err, codes.Unimplemented)
			checkHealth(t, conn, tt.other, jobs)
			checkReflection(t, conn, tt.other, jobs)
		})
	}
}
