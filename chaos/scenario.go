package chaos

import (
	"bytes"
	"embed"
	"fmt"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/raftelect/raftelect/config"
)

// Scenario is a schedule of faults and the outcome expected from it. It is
// read from a small YAML file; docs/chaos.md describes the format and the
// shipped files are in scenarios/.
type Scenario struct {
	Name        string `yaml:"name"`
	Description string `yaml:"description"`
	// Nodes is the cluster size (3 or 5 are usual); Options.Nodes
	// overrides it.
	Nodes int `yaml:"nodes"`
	// Duration is how long the run is observed after the cluster first has
	// a leader and settled. Every fault must end inside it.
	Duration config.Duration `yaml:"duration"`
	// Proxy routes every peer connection through a latency proxy, so that
	// latency faults can be added. Implied by any latency fault.
	Proxy    bool     `yaml:"proxy"`
	Schedule []Fault  `yaml:"schedule"`
	Expect   Expected `yaml:"expect"`
}

// Fault kinds.
const (
	FaultDrop    = "drop"    // silently drop every packet from -> to
	FaultIsolate = "isolate" // cut target off both ways
	FaultLoss    = "loss"    // drop percent % at random from -> to (every link by default)
	FaultFlap    = "flap"    // drop from -> to (isolate target without a link) on and off every period
	FaultKill    = "kill"    // kill -9 target; restart after restart_after if given
	FaultTerm    = "term"    // SIGTERM target; restart after restart_after if given
	FaultStop    = "stop"    // SIGSTOP target, SIGCONT at the end
	FaultLatency = "latency" // add latency and jitter from -> to through the proxy
)

var faultKinds = []string{FaultDrop, FaultIsolate, FaultLoss, FaultFlap, FaultKill, FaultTerm, FaultStop, FaultLatency}

// Fault is one entry of a schedule.
//
// Targets and link ends are roles, resolved when the fault starts: "leader"
// (the node leading then), "follower-1", "follower-2", ... (the other nodes
// in name order), a node name ("n2"), or, for loss and latency, "all".
type Fault struct {
	At config.Duration `yaml:"at"`
	// Duration: how long a network fault or SIGSTOP lasts; 0 (or absent)
	// keeps it until the end of the run. Ignored by kill and term.
	Duration config.Duration `yaml:"duration"`
	Kind     string          `yaml:"fault"`
	Target   string          `yaml:"target"`
	From     string          `yaml:"from"`
	To       string          `yaml:"to"`
	Params   Params          `yaml:"params"`
}

// Params holds the parameters of the fault kinds that take any.
type Params struct {
	Percent      int             `yaml:"percent"`       // loss
	Period       config.Duration `yaml:"period"`        // flap
	RestartAfter config.Duration `yaml:"restart_after"` // kill, term
	Latency      config.Duration `yaml:"latency"`       // latency
	Jitter       config.Duration `yaml:"jitter"`        // latency
}

// Expected is the outcome a scenario promises. Zero values check nothing,
// except that the checker's own rules (one leader per term, no lease
// overlap, ...) are always enforced; use a pointer's absence for "no bound".
type Expected struct {
	// MaxElections bounds the terms won after the observation began.
	MaxElections *int `yaml:"max_elections"`
	// MaxTermChanges bounds how far the highest term moved: a campaign
	// that failed still raises it.
	MaxTermChanges *int `yaml:"max_term_changes"`
	// MaxLeaderChanges bounds how often leadership passed to another node.
	MaxLeaderChanges *int `yaml:"max_leader_changes"`
	// MaxStepDowns bounds how often a leader stopped leading.
	MaxStepDowns *int `yaml:"max_step_downs"`
	// MaxOverlap bounds the time two nodes both held the lease (the
	// checker flags any overlap anyway).
	MaxOverlap *config.Duration `yaml:"max_overlap"`
	// NewLeaderWithin: after each fault that targets the leader, another
	// node leads within this long.
	NewLeaderWithin config.Duration `yaml:"new_leader_within"`
	// OldLeaseEndsWithin: after each fault that targets the leader, its
	// lease ends within this long (a killed node's ends at the kill).
	OldLeaseEndsWithin config.Duration `yaml:"old_lease_ends_within"`
	// OldLeaseEndsFirst: the old leader's lease ends before any other node
	// becomes leader.
	OldLeaseEndsFirst bool `yaml:"old_lease_ends_first"`
	// NoCampaign lists roles or names of nodes that must never become
	// pre-candidate or candidate. Roles take the binding of the first
	// fault that resolved them.
	NoCampaign []string `yaml:"no_campaign"`
	// MaxLeaderless bounds the total time no node led.
	MaxLeaderless *config.Duration `yaml:"max_leaderless"`
	// MaxRSSGrowthMB bounds, per node, how much its RSS grew from the
	// first fault to the end of the run.
	MaxRSSGrowthMB *float64 `yaml:"max_rss_growth_mb"`
	// MaxCPUPercent bounds each node's average CPU use over the run, in
	// percent of one core.
	MaxCPUPercent *float64 `yaml:"max_cpu_percent"`
}

//go:embed scenarios/*.yaml
var builtin embed.FS

// Builtin returns the names of the scenarios shipped with the package: the
// rows of docs/chaos.md's table, in that order, then slow-wan (latency).
func Builtin() []string {
	return []string{"healthy", "asym-drop", "partition-follower", "isolate-leader", "loss", "kill-leader", "stop-leader", "hung-peer", "slow-wan"}
}

// LoadScenario reads a scenario by built-in name ("asym-drop") or from a
// file path (anything with a slash or ending in .yaml).
func LoadScenario(nameOrPath string) (*Scenario, error) {
	var data []byte
	var err error
	src := nameOrPath
	if strings.ContainsRune(nameOrPath, '/') || strings.HasSuffix(nameOrPath, ".yaml") || strings.HasSuffix(nameOrPath, ".yml") {
		data, err = os.ReadFile(nameOrPath)
	} else {
		src = path.Join("scenarios", nameOrPath+".yaml")
		data, err = builtin.ReadFile(src)
		if err != nil {
			return nil, fmt.Errorf("chaos: no built-in scenario %q (have %s); or give a file path", nameOrPath, strings.Join(Builtin(), ", "))
		}
	}
	if err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}
	s, err := ParseScenario(data)
	if err != nil {
		return nil, fmt.Errorf("chaos: %s: %w", src, err)
	}
	return s, nil
}

// ParseScenario decodes and validates a scenario. Unknown fields are
// errors, so a misspelt expectation never silently checks nothing.
func ParseScenario(data []byte) (*Scenario, error) {
	s := &Scenario{}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(s); err != nil {
		return nil, err
	}
	if s.Nodes == 0 {
		s.Nodes = 3
	}
	return s, s.Validate()
}

// Validate checks the scenario for mistakes that would make a run
// meaningless.
func (s *Scenario) Validate() error {
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	if s.Name == "" {
		bad("name: empty")
	}
	if s.Nodes < 1 {
		bad("nodes: %d, want at least 1", s.Nodes)
	}
	if s.Duration <= 0 {
		bad("duration: %v, want a positive duration such as 30s", s.Duration)
	}
	for i, f := range s.Schedule {
		at := fmt.Sprintf("schedule[%d]", i)
		if !slices.Contains(faultKinds, f.Kind) {
			bad("%s.fault: %q, want one of %s", at, f.Kind, strings.Join(faultKinds, ", "))
			continue
		}
		if f.At < 0 || f.Duration < 0 {
			bad("%s: negative time", at)
		}
		if f.At.D()+f.Duration.D() > s.Duration.D() {
			bad("%s: ends at %v, after the run's duration %v", at, f.At.D()+f.Duration.D(), s.Duration.D())
		}
		switch f.Kind {
		case FaultDrop:
			if f.From == "" || f.To == "" {
				bad("%s: drop needs from and to", at)
			}
		case FaultIsolate, FaultKill, FaultTerm, FaultStop:
			if f.Target == "" {
				bad("%s: %s needs a target", at, f.Kind)
			}
		case FaultLoss:
			if f.Params.Percent <= 0 || f.Params.Percent > 100 {
				bad("%s: loss needs params.percent in 1..100", at)
			}
		case FaultFlap:
			if f.Params.Period <= 0 {
				bad("%s: flap needs params.period", at)
			}
			if f.Target == "" && (f.From == "" || f.To == "") {
				bad("%s: flap needs a target (isolate) or from and to (drop)", at)
			}
		case FaultLatency:
			if f.Params.Latency <= 0 {
				bad("%s: latency needs params.latency", at)
			}
			if f.Params.Jitter < 0 || f.Params.Jitter > f.Params.Latency {
				bad("%s: params.jitter must be between 0 and params.latency", at)
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("invalid scenario:\n  %s", strings.Join(errs, "\n  "))
	}
	return nil
}

// usesProxy reports whether peers must talk through latency proxies.
func (s *Scenario) usesProxy() bool {
	if s.Proxy {
		return true
	}
	for _, f := range s.Schedule {
		if f.Kind == FaultLatency {
			return true
		}
	}
	return false
}

// Scaled returns a copy whose times (the duration, every fault's start,
// length, flap period and restart delay) are multiplied by factor, for short
// test runs. Expectations are not scaled: they follow from the raft timings,
// which do not change. Fault lengths never drop below minFault, so that a
// fault still outlasts an election timeout.
func (s *Scenario) Scaled(factor float64, minFault time.Duration) *Scenario {
	c := *s
	c.Schedule = slices.Clone(s.Schedule)
	scale := func(d config.Duration, floor time.Duration) config.Duration {
		if d == 0 {
			return 0
		}
		return config.Duration(max(time.Duration(float64(d)*factor), floor))
	}
	end := time.Duration(0)
	for i := range c.Schedule {
		f := &c.Schedule[i]
		f.At = scale(f.At, 0)
		f.Duration = scale(f.Duration, minFault)
		f.Params.Period = scale(f.Params.Period, 0)
		f.Params.RestartAfter = scale(f.Params.RestartAfter, 0)
		end = max(end, f.At.D()+f.Duration.D()+f.Params.RestartAfter.D())
	}
	// Leave time after the last fault to see its aftermath.
	c.Duration = config.Duration(max(time.Duration(float64(s.Duration)*factor), end+minFault))
	return &c
}
