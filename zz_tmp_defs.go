package larder

import "time"

// Temporary copies of definitions that live in ports.go on main; this file
// is dropped when the branch is merged.

type InputGeneration struct {
	View       string
	Generation int64
	AsOf       time.Time
}

type Trigger string

const (
	TriggerManual     Trigger = "manual"
	TriggerSchedule   Trigger = "schedule"
	TriggerCatchUp    Trigger = "catch-up"
	TriggerDependency Trigger = "dependency"
	TriggerJob        Trigger = "job"
	TriggerStartup    Trigger = "startup"
)
