package chaos

import (
	"time"

	"github.com/raftelect/raftelect/config"
)

// ReproScenario is the reference system's finding #1 as a scenario: three
// nodes; for window, every packet from the leader to one follower is
// silently dropped while every other link works. The leader keeps a
// majority, so nothing may change: no election, no step-down, and the
// follower that still hears the leader never campaigns. With synchronous
// sends (Options.SyncSend) the leader's sends to the healthy follower wait
// behind those to the silent one, and the run fails.
func ReproScenario(window time.Duration) *Scenario {
	zero := 0
	return &Scenario{
		Name:        "repro-asym-drop",
		Description: "reference finding #1: silently drop leader -> follower-1 for the window; no election, no step-down",
		Nodes:       3,
		Duration:    config.Duration(window + 3*time.Second),
		Schedule: []Fault{{
			At: config.Duration(time.Second), Duration: config.Duration(window),
			Kind: FaultDrop, From: "leader", To: "follower-1",
		}},
		Expect: Expected{
			MaxElections: &zero, MaxStepDowns: &zero, MaxLeaderChanges: &zero,
			NoCampaign: []string{"follower-2"},
		},
	}
}
