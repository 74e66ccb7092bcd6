package queue

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/larder-dev/larder"
)

// progress is the JSON form of larder.JobProgress in a job's hash.
type progress struct {
	Phase string `json:"phase,omitempty"`
	Done  int64  `json:"done"`
	Total int64  `json:"total"`
	Unit  string `json:"unit,omitempty"`
}

func encodeProgress(p larder.JobProgress) string {
	b, _ := json.Marshal(progress{Phase: p.Phase, Done: p.Done, Total: p.Total, Unit: p.Unit})
	return string(b)
}

// decodeRecord decodes a script's job record: {HGETALL, LRANGE children}.
func decodeRecord(rec []any) (larder.Job, error) {
	if len(rec) != 2 {
		return larder.Job{}, fmt.Errorf("queue: malformed job record %v", rec)
	}
	flat, _ := rec[0].([]any)
	h := make(map[string]string, len(flat)/2)
	for i := 0; i+1 < len(flat); i += 2 {
		k, _ := flat[i].(string)
		v, _ := flat[i+1].(string)
		h[k] = v
	}
	list, _ := rec[1].([]any)
	children := make([]string, 0, len(list))
	for _, c := range list {
		s, _ := c.(string)
		children = append(children, s)
	}
	return decodeJob(h, children)
}

// decodeJob decodes a job's hash and children. A waiting job's Progress
// counts its finished children.
func decodeJob(h map[string]string, children []string) (larder.Job, error) {
	j := larder.Job{
		ID: h["id"],
		JobSpec: larder.JobSpec{
			Kind:        larder.JobKind(h["kind"]),
			Description: h["description"],
			Parent:      h["parent"],
			Key:         h["key"],
		},
		State:     larder.JobState(h["state"]),
		Worker:    h["worker"],
		LastError: h["last_error"],
	}
	if a := h["args"]; a != "" {
		j.Args = json.RawMessage(a)
	}
	if r := h["result"]; r != "" {
		j.Result = json.RawMessage(r)
	}
	if len(children) > 0 {
		j.Children = children
	}
	var err error
	for _, f := range []struct {
		name string
		dst  *int
	}{{"max_attempts", &j.MaxAttempts}, {"attempts", &j.Attempts}} {
		if v := h[f.name]; v != "" {
			if *f.dst, err = strconv.Atoi(v); err != nil {
				return larder.Job{}, fmt.Errorf("queue: job %s: bad %s %q", j.ID, f.name, v)
			}
		}
	}
	for _, f := range []struct {
		name string
		dst  *time.Time
	}{{"created_at", &j.CreatedAt}, {"started_at", &j.StartedAt}, {"finished_at", &j.FinishedAt}, {"next_attempt_at", &j.NextAttemptAt}} {
		if v := h[f.name]; v != "" {
			if *f.dst, err = time.Parse(time.RFC3339Nano, v); err != nil {
				return larder.Job{}, fmt.Errorf("queue: job %s: bad %s %q", j.ID, f.name, v)
			}
		}
	}
	if v := h["progress"]; v != "" {
		var p progress
		if err := json.Unmarshal([]byte(v), &p); err != nil {
			return larder.Job{}, fmt.Errorf("queue: job %s: bad progress %q", j.ID, v)
		}
		j.Progress = larder.JobProgress{Phase: p.Phase, Done: p.Done, Total: p.Total, Unit: p.Unit}
	}
	if j.State == larder.JobWaiting {
		active, _ := strconv.ParseInt(h["active_children"], 10, 64)
		total := int64(len(children))
		j.Progress = larder.JobProgress{Phase: "waiting for children", Done: total - active, Total: total, Unit: "jobs"}
	}
	return j, nil
}
