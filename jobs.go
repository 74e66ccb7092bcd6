package larder

import (
	"context"
	"encoding/json"
	"time"
)

// JobKind is the kind of work a job does; it selects the worker's handler
// and the shape of the job's arguments.
type JobKind string

// The job kinds.
const (
	// JobMaterialize runs views at one as-of, in dependency order
	// (MaterializeArgs).
	JobMaterialize JobKind = "materialize"
	// JobShard writes one shard of a sharded generation (ShardArgs).
	JobShard JobKind = "materialize-shard"
	// JobScore scores a Parquet file with a ranker's or a prediction
	// view's model and writes the scores to another (ScoreArgs).
	JobScore JobKind = "score"
)

// JobState is where a job stands.
type JobState string

// The states of a job. Queued, running, retrying and waiting jobs are
// active; the others are done and never change again.
const (
	// JobQueued waits for a worker.
	JobQueued JobState = "queued"
	// JobRunning is being processed by a worker.
	JobRunning JobState = "running"
	// JobRetrying failed and waits for its next attempt (NextAttemptAt).
	JobRetrying JobState = "retrying"
	// JobWaiting has done its own part and waits for the jobs it
	// started (Children), such as the shards of a sharded run.
	JobWaiting JobState = "waiting"
	// JobSucceeded finished, and so did every job it started.
	JobSucceeded JobState = "succeeded"
	// JobFailed failed on its last attempt, or a job it started did.
	JobFailed JobState = "failed"
	// JobCancelled was cancelled before it finished.
	JobCancelled JobState = "cancelled"
)

// JobStates lists the job states in the order of a job's life.
func JobStates() []JobState {
	return []JobState{JobQueued, JobRunning, JobRetrying, JobWaiting, JobSucceeded, JobFailed, JobCancelled}
}

// Done reports whether s is a final state.
func (s JobState) Done() bool {
	return s == JobSucceeded || s == JobFailed || s == JobCancelled
}

// Valid reports whether s is one of the job states.
func (s JobState) Valid() bool {
	for _, x := range JobStates() {
		if s == x {
			return true
		}
	}
	return false
}

// JobSpec is a job as submitted.
type JobSpec struct {
	Kind JobKind
	// Args are the kind's arguments as JSON: MaterializeArgs, ShardArgs
	// or ScoreArgs.
	Args json.RawMessage
	// Description says what the job does, for operators, such as
	// "materialize user_profile, item_click_prior as of 2026-12-01T03:00:00Z".
	Description string
	// MaxAttempts bounds the attempts of the job, the first included;
	// 0 means the queue's default.
	MaxAttempts int
	// Parent is the job that started this one, "" for none. A parent in
	// state JobWaiting finishes when the last of its children does.
	Parent string
	// Key, when not empty, makes Submit idempotent: a job submitted with
	// the key of a job the queue still holds is not queued again, and
	// Submit returns that job.
	Key string
}

// JobProgress is how far a job has come: Done of Total Units (rows,
// entities, shards), in Phase.
type JobProgress struct {
	Phase       string
	Done, Total int64
	Unit        string
}

// Job is a job as the queue keeps it.
type Job struct {
	ID string
	JobSpec
	State JobState
	// Attempts counts the attempts started so far; MaxAttempts is the
	// limit that applies (JobSpec.MaxAttempts or the queue's default).
	Attempts int
	Progress JobProgress
	// Worker names the worker of the current or last attempt.
	Worker string
	// CreatedAt is when the job was submitted; StartedAt when its first
	// attempt started; FinishedAt when it reached a final state;
	// NextAttemptAt when a retrying job runs again. Zero when not yet.
	CreatedAt, StartedAt, FinishedAt, NextAttemptAt time.Time
	// LastError is the error of the last failed attempt, or the reason a
	// job failed or was cancelled.
	LastError string
	// Result is what the job's handler returned, as JSON, once it
	// succeeded (for example MaterializeResult).
	Result json.RawMessage
	// Children are the jobs this one started, in order.
	Children []string
}

// JobFilter selects jobs for JobQueue.Jobs. The zero JobFilter selects the
// most recent jobs of every kind and state.
type JobFilter struct {
	State JobState
	Kind  JobKind
	// Limit bounds the number of jobs returned; 0 means a default of 100.
	Limit int
}

// JobQueue is the queue of jobs that workers process, as the server
// (JobService) and the CLI (`larder jobs`, `larder materialize --async`)
// use it. The queue adapter implements it.
type JobQueue interface {
	// Submit queues a job and returns it with its id. It returns an
	// *InvalidError when spec names no known kind.
	Submit(ctx context.Context, spec JobSpec) (Job, error)
	// Job returns the job with the id, or an error wrapping ErrNotFound.
	Job(ctx context.Context, id string) (Job, error)
	// Jobs returns the jobs that f selects, newest first.
	Jobs(ctx context.Context, f JobFilter) ([]Job, error)
	// Cancel cancels a job that is not done, and the active jobs it
	// started: a queued or retrying job never runs again, and a running
	// one has its work stopped, its generation discarded. It returns the
	// job as it stands after the request, an error wrapping ErrNotFound
	// for an unknown id, and the job unchanged when it was already done.
	Cancel(ctx context.Context, id string) (Job, error)
}

// MaterializeArgs are the arguments of a JobMaterialize job.
type MaterializeArgs struct {
	// Views are run in dependency order (views that read other views after
	// them), each at AsOf.
	Views []string `json:"views"`
	// Dependents adds the views without a schedule of their own that read
	// Views (and those that read these), run after them at AsOf as
	// dependents: triggered by them, and skipped when another run of them
	// is in progress. A scheduler's job sets it.
	Dependents bool `json:"dependents,omitempty"`
	// AsOf is the instant every view is computed as of. The zero time means
	// when each attempt starts: submitters fill it (larder materialize
	// --async and the JobService with the submission's time), so that every
	// attempt and shard computes one instant.
	AsOf time.Time `json:"as_of,omitzero"`
	// Trigger is what submitted the job (TriggerJob when empty), and Tick
	// the schedule tick, for jobs a scheduler submitted.
	Trigger Trigger   `json:"trigger,omitempty"`
	Tick    time.Time `json:"tick,omitzero"`
}

// ShardArgs are the arguments of a JobShard job: shard Shard of Shards of
// generation Generation of View, at AsOf, under the run lease Token.
type ShardArgs struct {
	View       string    `json:"view"`
	Generation int64     `json:"generation"`
	Shard      int       `json:"shard"`
	Shards     int       `json:"shards"`
	AsOf       time.Time `json:"as_of"`
	// Cutoff is, for a streaming aggregate view, the cutoff every shard
	// computes its part as of (the generation's as-of, from the source's
	// newest event); the zero time for other views.
	Cutoff time.Time `json:"cutoff,omitzero"`
	// Token is the fencing token of the run lease that holds the
	// generation; Owner the lease's owner.
	Token int64  `json:"token"`
	Owner string `json:"owner,omitempty"`
	// Then are views to run, at AsOf, once the generation is published:
	// the rest of the job that started the shards.
	Then    []string  `json:"then,omitempty"`
	Trigger Trigger   `json:"trigger,omitempty"`
	Tick    time.Time `json:"tick,omitzero"`
}

// MaterializeResult is the result of a JobMaterialize or JobShard job:
// the generations it published.
type MaterializeResult struct {
	Generations []InputGeneration `json:"generations,omitempty"`
}

// ScoreArgs are the arguments of a JobScore job: score the rows of Input
// with the model of Ranker or of the prediction view View (exactly one of
// them), reading the features the model needs from the live generations,
// and write the scores to Output.
type ScoreArgs struct {
	Ranker string `json:"ranker,omitempty"`
	View   string `json:"view,omitempty"`
	// Input is a Parquet file, folder or glob; Output the Parquet file
	// written. Relative paths are resolved against the project folder.
	Input  string `json:"input"`
	Output string `json:"output"`
	// AsOf is the instant staleness is judged at (a value older than its
	// view's max_age takes the input's default, as in Rank); the zero
	// time means when the job starts.
	AsOf time.Time `json:"as_of,omitzero"`
	// ContextColumn and CandidateColumn name the input's key columns for
	// a ranker; by default the key names of the ranker's context and
	// candidate entities. KeyColumn names the key column for a
	// prediction view; by default its entity's key name.
	ContextColumn   string `json:"context_column,omitempty"`
	CandidateColumn string `json:"candidate_column,omitempty"`
	KeyColumn       string `json:"key_column,omitempty"`
	// BatchSize is the number of rows scored per model run; 0 means 1024.
	BatchSize int `json:"batch_size,omitempty"`
}

// ScoreResult is the result of a JobScore job.
type ScoreResult struct {
	Output string `json:"output"`
	Rows   int64  `json:"rows"`
	// Model is the version of the model that scored the rows, and
	// Generations the generations the features were read from.
	Model       string            `json:"model"`
	Generations []InputGeneration `json:"generations,omitempty"`
}
