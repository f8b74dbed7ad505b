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
	Proxy bool `yaml:"proxy"`
	// Config overrides the harness's configuration of every node (timings,
	// peer list); NodeConfig overrides it for the named nodes ("n4").
	Config     NodeConfig            `yaml:"config"`
	NodeConfig map[string]NodeConfig `yaml:"node_config"`
	// Start names the nodes started before the observation; absent, all.
	// The others wait for a start fault.
	Start []string `yaml:"start"`
	// Settle is what the harness waits for before observing: "leader" (the
	// default: every started node alive in one term with one leader, for
	// two election timeouts) or "alive" (every started node alive, for two
	// election timeouts: for nodes that cannot elect on their own).
	Settle string `yaml:"settle"`
	// Unscaled keeps the schedule as written under Scaled (--scale): for
	// scenarios that are short already and whose times follow from
	// something a factor would break (a node restarted between two others,
	// a 5 s election timeout to wait out, keepalive's 10 s).
	Unscaled bool     `yaml:"unscaled"`
	Schedule []Fault  `yaml:"schedule"`
	Expect   Expected `yaml:"expect"`
}

// Settle modes.
const (
	SettleLeader = "leader"
	SettleAlive  = "alive"
)

// NodeConfig is what a scenario may change in a node's configuration file.
// Zero fields keep the harness's value (Options' timings, every node as a
// peer).
type NodeConfig struct {
	HeartbeatInterval config.Duration `yaml:"heartbeat_interval"`
	ElectionTimeout   config.Duration `yaml:"election_timeout"`
	// Peers names the nodes this node lists as members ("n1", "n2", ...),
	// itself included; their addresses are the harness's.
	Peers []string `yaml:"peers"`
	// KeepaliveTime and KeepaliveTimeout go to transport.keepalive_time
	// and transport.keepalive_timeout.
	KeepaliveTime    config.Duration `yaml:"keepalive_time"`
	KeepaliveTimeout config.Duration `yaml:"keepalive_timeout"`
	// FastFailoverOnRefusal sets fast_failover_on_refusal: a refused
	// connection to the leader is taken as proof that it is gone. Only
	// true changes anything (a restart cannot turn it off again).
	FastFailoverOnRefusal bool `yaml:"fast_failover_on_refusal"`
	// Join starts the node as one that joins a running cluster (join:
	// true in its file, and no `raftelect bootstrap`): it waits to be
	// added by an add fault.
	Join bool `yaml:"join"`
	// Witness and Priority describe the node as a member: every node's
	// peer list carries them, and an add fault adds it with them.
	Witness  bool `yaml:"witness"`
	Priority int  `yaml:"priority"`
	// FailBackAfter goes to fail_back_after: how long leader and a voter of
	// higher priority must be stable before leadership moves back.
	FailBackAfter config.Duration `yaml:"fail_back_after"`
}

// merge returns c with the non-zero fields of o over it.
func (c NodeConfig) merge(o NodeConfig) NodeConfig {
	if o.HeartbeatInterval != 0 {
		c.HeartbeatInterval = o.HeartbeatInterval
	}
	if o.ElectionTimeout != 0 {
		c.ElectionTimeout = o.ElectionTimeout
	}
	if o.Peers != nil {
		c.Peers = slices.Clone(o.Peers)
	}
	if o.KeepaliveTime != 0 {
		c.KeepaliveTime = o.KeepaliveTime
	}
	if o.KeepaliveTimeout != 0 {
		c.KeepaliveTimeout = o.KeepaliveTimeout
	}
	c.FastFailoverOnRefusal = c.FastFailoverOnRefusal || o.FastFailoverOnRefusal
	c.Join = c.Join || o.Join
	c.Witness = c.Witness || o.Witness
	if o.Priority != 0 {
		c.Priority = o.Priority
	}
	if o.FailBackAfter != 0 {
		c.FailBackAfter = o.FailBackAfter
	}
	return c
}

func (c NodeConfig) String() string {
	var parts []string
	if c.HeartbeatInterval != 0 {
		parts = append(parts, "heartbeat_interval "+c.HeartbeatInterval.String())
	}
	if c.ElectionTimeout != 0 {
		parts = append(parts, "election_timeout "+c.ElectionTimeout.String())
	}
	if c.Peers != nil {
		parts = append(parts, "peers ["+strings.Join(c.Peers, ",")+"]")
	}
	if c.KeepaliveTime != 0 {
		parts = append(parts, "keepalive_time "+c.KeepaliveTime.String())
	}
	if c.KeepaliveTimeout != 0 {
		parts = append(parts, "keepalive_timeout "+c.KeepaliveTimeout.String())
	}
	if c.FastFailoverOnRefusal {
		parts = append(parts, "fast_failover_on_refusal")
	}
	if c.Join {
		parts = append(parts, "join")
	}
	if c.Witness {
		parts = append(parts, "witness")
	}
	if c.Priority != 0 {
		parts = append(parts, fmt.Sprintf("priority %d", c.Priority))
	}
	if c.FailBackAfter != 0 {
		parts = append(parts, "fail_back_after "+c.FailBackAfter.String())
	}
	return strings.Join(parts, ", ")
}

// Fault kinds.
const (
	FaultDrop    = "drop"     // silently drop every packet from -> to
	FaultIsolate = "isolate"  // cut target off both ways
	FaultLoss    = "loss"     // drop percent % at random from -> to (every link by default), on from's way out or (arriving) as they arrive at to
	FaultFlap    = "flap"     // drop from -> to (isolate target without a link) on and off every period
	FaultKill    = "kill"     // kill -9 target; restart after restart_after if given
	FaultTerm    = "term"     // SIGTERM target; restart after restart_after if given
	FaultStop    = "stop"     // SIGSTOP target, SIGCONT at the end
	FaultLatency = "latency"  // add latency and jitter from -> to through the proxy
	FaultReject  = "reject"   // target's peer port answers with RST or ICMP port unreachable
	FaultUDPDrop = "udp_drop" // drop every UDP packet in and out of target ("all": every node), TCP passes
	FaultRestart = "restart"  // SIGTERM target, then start it again with config applied
	FaultStart   = "start"    // start target, a node not running, with config applied
	// Membership changes (not faults, but scheduled as they are). They run
	// one at a time, in schedule order: each starts at its time or when the
	// change before it finished, whichever is later.
	FaultAdd    = "add"    // start target with join and ask the leader to add it (replacing params.replaces)
	FaultRemove = "remove" // ask the leader to remove target; a running target must exit by itself, removed
)

var faultKinds = []string{FaultDrop, FaultIsolate, FaultLoss, FaultFlap, FaultKill, FaultTerm, FaultStop, FaultLatency, FaultReject, FaultUDPDrop, FaultRestart, FaultStart, FaultAdd, FaultRemove}

// When values: what a kill waits for after its time.
const (
	// WhenJoint: kill the leader once it has applied a joint configuration
	// (a replacement's), before it leaves it.
	WhenJoint = "joint"
)

// Fault is one entry of a schedule.
//
// Targets and link ends are roles, resolved when the fault starts: "leader"
// (the node leading then), "follower-1", "follower-2", ... (the other nodes
// in name order), a node name ("n2"), or, for drop, loss, latency and
// udp_drop, "all".
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
	// Config changes the target's configuration file before a restart or
	// start fault starts it; the change stays for later restarts.
	Config *NodeConfig `yaml:"config"`
}

// Params holds the parameters of the fault kinds that take any.
type Params struct {
	Percent      int             `yaml:"percent"`       // loss
	Period       config.Duration `yaml:"period"`        // flap
	RestartAfter config.Duration `yaml:"restart_after"` // kill, term
	Latency      config.Duration `yaml:"latency"`       // latency
	Jitter       config.Duration `yaml:"jitter"`        // latency
	// Arriving: loss: lose the packets as they arrive at to
	// (netns.LossArriving), as a lossy network does, instead of on from's
	// way out, where the sender's TCP learns of each drop at once.
	Arriving bool `yaml:"arriving"`
	// Reject: "tcp-reset" (the default) or "icmp-port-unreachable".
	Reject string `yaml:"reject"`
	// Replaces: add: the member the new one replaces, in one joint change.
	Replaces string `yaml:"replaces"`
	// When: kill: from its time on, wait for this (joint) and then kill
	// the leader; target must be leader.
	When string `yaml:"when"`
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
	// NeverLead lists roles or names of nodes that must never become
	// leader during the observation (bound as for NoCampaign).
	NeverLead []string `yaml:"never_lead"`
	// MaxLeaderless bounds the total time no node led.
	MaxLeaderless *config.Duration `yaml:"max_leaderless"`
	// MaxRSSGrowthMB bounds, per node, how much its RSS grew from the
	// first fault to the end of the run.
	MaxRSSGrowthMB *float64 `yaml:"max_rss_growth_mb"`
	// MaxCPUPercent bounds each node's average CPU use over the run, in
	// percent of one core.
	MaxCPUPercent *float64 `yaml:"max_cpu_percent"`
	// NeverLease lists nodes that must never hold the lease during the
	// observation (a witness).
	NeverLease []string `yaml:"never_lease"`
	// FailBack: after the last fault ends, leadership returns to a node,
	// not before and no later than given.
	FailBack *FailBackExpect `yaml:"fail_back"`
	// MaxChangeTime bounds each membership change, from its request to
	// its result applied on every member.
	MaxChangeTime config.Duration `yaml:"max_change_time"`
	// AgreeAfterHealWithin: when each drop fault ends, every running node
	// names the same leader in the same term within this long (and from
	// then on until the next event that changes it).
	AgreeAfterHealWithin config.Duration `yaml:"agree_after_heal_within"`
	// MaxLogBytes and MaxLogLines bound, per node, what it wrote to its
	// log (stderr) during the observation: a log storm fails the run.
	MaxLogBytes *int64 `yaml:"max_log_bytes"`
	MaxLogLines *int   `yaml:"max_log_lines"`
}

// FailBackExpect: leadership returns to To after the last fault ends, no
// sooner than NotBefore (the stable period) and within Within.
type FailBackExpect struct {
	To        string          `yaml:"to"`
	NotBefore config.Duration `yaml:"not_before"`
	Within    config.Duration `yaml:"within"`
}

//go:embed scenarios/*.yaml
var builtin embed.FS

// Builtin returns the names of the scenarios shipped with the package: the
// rows of docs/chaos.md's table, in that order.
func Builtin() []string {
	return []string{"healthy", "asym-drop", "partition-follower", "isolate-leader", "loss", "loss-arriving", "kill-leader", "stop-leader", "hung-peer", "slow-wan",
		"kill-leader-fast", "rolling-timeout", "rolling-timeout-up", "peer-lists-3-first", "peer-lists-5-first", "peer-lists-minority", "reject-leader", "reject-leader-icmp",
		"no-udp", "reject-leader-no-udp", "reject-leader-icmp-no-udp",
		"grow-shrink", "replace-dead", "remove-leader", "witness-two-region"}
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
		case FaultIsolate, FaultKill, FaultTerm, FaultStop, FaultRestart, FaultStart, FaultAdd, FaultRemove, FaultUDPDrop:
			if f.Target == "" {
				bad("%s: %s needs a target", at, f.Kind)
			}
		case FaultReject:
			if f.Target == "" {
				bad("%s: reject needs a target", at)
			}
			if r := f.Params.Reject; r != "" && r != "tcp-reset" && r != "icmp-port-unreachable" {
				bad("%s: params.reject %q, want tcp-reset or icmp-port-unreachable", at, r)
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
	for i, f := range s.Schedule {
		if f.Config != nil && f.Kind != FaultRestart && f.Kind != FaultStart && f.Kind != FaultAdd {
			bad("schedule[%d]: config applies to restart, start and add, not %s", i, f.Kind)
		}
		if f.Params.Arriving && f.Kind != FaultLoss {
			bad("schedule[%d]: params.arriving applies to loss, not %s", i, f.Kind)
		}
		if f.Params.Replaces != "" && f.Kind != FaultAdd {
			bad("schedule[%d]: params.replaces applies to add, not %s", i, f.Kind)
		}
		switch {
		case f.Params.When == "":
		case f.Params.When != WhenJoint:
			bad("schedule[%d]: params.when %q, want %s", i, f.Params.When, WhenJoint)
		case f.Kind != FaultKill || f.Target != roleLeader:
			bad("schedule[%d]: params.when applies to a kill of the leader", i)
		}
	}
	if fb := s.Expect.FailBack; fb != nil && (fb.To == "" || fb.Within <= 0 || fb.NotBefore > fb.Within) {
		bad("expect.fail_back: want to, within > 0 and not_before <= within")
	}
	switch s.Settle {
	case "", SettleLeader, SettleAlive:
	default:
		bad("settle: %q, want %s or %s", s.Settle, SettleLeader, SettleAlive)
	}
	if len(errs) > 0 {
		return fmt.Errorf("invalid scenario:\n  %s", strings.Join(errs, "\n  "))
	}
	return nil
}

// nodeConfigs returns each node's overrides (Config, then NodeConfig of
// its name) in a cluster of n nodes, and checks that every name the
// scenario uses for a node exists there.
func (s *Scenario) nodeConfigs(n int) ([]NodeConfig, error) {
	var errs []string
	exists := func(name string) bool {
		var k int
		_, err := fmt.Sscanf(name, "n%d", &k)
		return err == nil && k >= 1 && k <= n && name == fmt.Sprintf("n%d", k)
	}
	for name := range s.NodeConfig {
		if !exists(name) {
			errs = append(errs, fmt.Sprintf("node_config: no node %q in a cluster of %d (n1..n%d)", name, n, n))
		}
	}
	for _, name := range s.Start {
		if !exists(name) {
			errs = append(errs, fmt.Sprintf("start: no node %q in a cluster of %d (n1..n%d)", name, n, n))
		}
	}
	out := make([]NodeConfig, n)
	for i := range out {
		name := fmt.Sprintf("n%d", i+1)
		out[i] = s.Config.merge(s.NodeConfig[name])
		if err := checkNodeConfig(name, out[i], n); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("chaos: %s: %s", s.Name, strings.Join(errs, "; "))
	}
	return out, nil
}

// checkNodeConfig reports a peer list of node that names a node a cluster
// of n does not have, or leaves out node itself (raftelect would refuse to
// start).
func checkNodeConfig(node string, c NodeConfig, n int) error {
	if c.Peers == nil {
		return nil
	}
	if !slices.Contains(c.Peers, node) {
		return fmt.Errorf("%s's peers %v leave out %s itself", node, c.Peers, node)
	}
	for _, p := range c.Peers {
		var k int
		if _, err := fmt.Sscanf(p, "n%d", &k); err != nil || k < 1 || k > n || p != fmt.Sprintf("n%d", k) {
			return fmt.Errorf("%s's peers %v name %q, not a node of this cluster (n1..n%d)", node, c.Peers, p, n)
		}
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
// test runs (unless the scenario is Unscaled). Expectations are not scaled: they follow from the raft timings,
// which do not change. Fault lengths never drop below minFault, so that a
// fault still outlasts an election timeout.
func (s *Scenario) Scaled(factor float64, minFault time.Duration) *Scenario {
	c := *s
	if s.Unscaled {
		c.Schedule = slices.Clone(s.Schedule)
		return &c
	}
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

// WithTimingSlack returns a copy whose timing targets (new leader within,
// old lease ends within, change time, agreement after a heal, fail-back
// within, CPU) are k times as
// loose. The Go test suite uses it: on a shared CI machine a timing target
// is a figure (each run's one-line result prints it), and only a miss by k
// times is a failure, which still catches a node that never elects or never
// stops. Counted promises (elections, overlap, the old lease ending first,
// who never leads) and the fail-back's stable period stay exact. `raftelect
// chaos` judges against the targets as written.
func (s *Scenario) WithTimingSlack(k float64) *Scenario {
	c := *s
	x := &c.Expect
	x.NewLeaderWithin = config.Duration(float64(x.NewLeaderWithin) * k)
	x.OldLeaseEndsWithin = config.Duration(float64(x.OldLeaseEndsWithin) * k)
	x.MaxChangeTime = config.Duration(float64(x.MaxChangeTime) * k)
	x.AgreeAfterHealWithin = config.Duration(float64(x.AgreeAfterHealWithin) * k)
	if x.FailBack != nil {
		// Within is a target; NotBefore is the stable period, a promise.
		fb := *x.FailBack
		fb.Within = config.Duration(float64(fb.Within) * k)
		x.FailBack = &fb
	}
	if x.MaxCPUPercent != nil {
		v := *x.MaxCPUPercent * k
		x.MaxCPUPercent = &v
	}
	return &c
}
