package main

// End-to-end tests against the built binary: real processes on loopback,
// mutual TLS from `raftelect certs`, test timings (heartbeat
// 100ms, election timeout 1s).

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/raftelect/raftelect/config"
	"github.com/raftelect/raftelect/internal/proccluster"
	"github.com/raftelect/raftelect/internal/testport"
	"go.uber.org/goleak"
)

var binary string // built once by TestMain

func TestMain(m *testing.M) {
	bin, remove, err := proccluster.Build(".", "raftelect")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = bin
	code := m.Run()
	remove()
	// No goroutine outlives the tests (goleak, as in every package): the
	// exec watchdogs' waiters and the launcher's process waiters included.
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// result is one finished invocation of the binary.
type result struct {
	stdout, stderr string
	code           int
}

func raftelect(t *testing.T, args ...string) result {
	t.Helper()
	cmd := exec.Command(binary, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("raftelect %v: %v", args, err)
	}
	return r
}

// freePorts returns n loopback ports that were free a moment ago, from
// below the ephemeral range: nodes restart on them (see internal/testport).
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		addr, err := testport.Addr()
		if err != nil {
			t.Fatal(err)
		}
		_, p, _ := net.SplitHostPort(addr)
		port, err := strconv.Atoi(p)
		if err != nil {
			t.Fatal(err)
		}
		ports = append(ports, port)
	}
	return ports
}

// loneNodeConfig writes dir/n1.yaml: n1 of a three-node cluster whose
// peers do not run (n2's port is free, n3's is 1), test timings, no TLS,
// its data in dir/data; tweak, if set, adjusts it. It returns the path
// and the ports of n1 and n2.
func loneNodeConfig(t *testing.T, dir string, tweak func(*config.Node)) (string, []int) {
	t.Helper()
	ports := freePorts(t, 2)
	n := &config.Node{
		Name: "n1",
		Peers: []config.Peer{
			{Name: "n1", Address: fmt.Sprintf("127.0.0.1:%d", ports[0])},
			{Name: "n2", Address: fmt.Sprintf("127.0.0.1:%d", ports[1])},
			{Name: "n3", Address: "127.0.0.1:1"},
		},
		HeartbeatInterval: config.Duration(100 * time.Millisecond), ElectionTimeout: config.Duration(time.Second),
		Insecure: true, DataDir: "data",
	}
	if tweak != nil {
		tweak(n)
	}
	path := filepath.Join(dir, "n1.yaml")
	if err := n.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	return path, ports
}

// eventually polls cond every 50ms until it returns nil or limit passes.
func eventually(t *testing.T, limit time.Duration, what string, cond func() error) {
	t.Helper()
	if err := proccluster.Poll(context.Background(), limit, 50*time.Millisecond, what, cond); err != nil {
		t.Fatal(err)
	}
}

// proc is one `raftelect run` process: slot i of a proccluster.
type proc struct {
	name, httpAddr, cfg string
	log                 string
	pc                  *proccluster.Cluster
	i                   int
	done                chan struct{} // closed once it exited and exitCode is set
	exitCode            int
}

type cluster struct {
	dir   string
	nodes []*proc
}

// startCluster makes certificates with the binary, writes three configs
// and starts three nodes.
func startCluster(t *testing.T) *cluster {
	t.Helper()
	return startClusterWith(t, nil)
}

// startClusterWith is startCluster with tweak, if set, adjusting each
// node's configuration before it is written.
func startClusterWith(t *testing.T, tweak func(*config.Node)) *cluster {
	t.Helper()
	c := &cluster{dir: t.TempDir()}
	certDir := filepath.Join(c.dir, "certs")
	if r := raftelect(t, "certs", "init", "--dir", certDir); r.code != 0 {
		t.Fatalf("certs init: %+v", r)
	}
	pc, err := proccluster.New(proccluster.Options{Nodes: 3, Dir: c.dir, Binary: binary})
	if err != nil {
		t.Fatal(err)
	}
	ports := freePorts(t, 6)
	var peers []config.Peer
	for i, n := range pc.Nodes() {
		peers = append(peers, config.Peer{Name: n.Name, Address: fmt.Sprintf("127.0.0.1:%d", ports[i])})
	}
	for i, n := range pc.Nodes() {
		if r := raftelect(t, "certs", "issue", "--dir", certDir, "--name", n.Name, "--host", "127.0.0.1"); r.code != 0 {
			t.Fatalf("certs issue: %+v", r)
		}
		p := &proc{name: n.Name, httpAddr: fmt.Sprintf("127.0.0.1:%d", ports[3+i]), cfg: n.Config, log: n.Log, pc: pc, i: i}
		// Relative paths: relative to the config's directory.
		cfg := &config.Node{
			Name: n.Name, Peers: peers,
			HeartbeatInterval: config.Duration(100 * time.Millisecond), ElectionTimeout: config.Duration(time.Second),
			TLS:     config.TLS{CAFile: "certs/ca.crt", CertFile: "certs/" + n.Name + ".crt", KeyFile: "certs/" + n.Name + ".key"},
			DataDir: "data/" + n.Name, HTTPAddress: p.httpAddr, EventLog: n.Name + ".events",
			Log: config.Log{Format: "json"}, Operators: []string{"ops"},
		}
		if tweak != nil {
			tweak(cfg)
		}
		if err := pc.WriteConfig(n, cfg); err != nil {
			t.Fatal(err)
		}
		c.nodes = append(c.nodes, p)
	}
	t.Cleanup(func() {
		if err := pc.Close(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			for _, p := range c.nodes {
				b, _ := os.ReadFile(p.log)
				t.Logf("log of %s:\n%s", p.name, b)
			}
		}
	})
	for _, p := range c.nodes {
		p.start(t)
	}
	return c
}

// start starts p's process (again). A proc made by hand (no cluster) gets
// a one-slot proccluster that runs `raftelect run --config p.cfg` with its
// output in p.log, closed at the end of the test.
func (p *proc) start(t *testing.T) {
	t.Helper()
	if p.pc == nil {
		pc, err := proccluster.New(proccluster.Options{
			Nodes: 1, Dir: filepath.Dir(p.cfg),
			Args: func(*proccluster.Node) []string { return []string{binary, "run", "--config", p.cfg} },
		})
		if err != nil {
			t.Fatal(err)
		}
		pc.Node(0).Log = p.log
		p.pc = pc
		t.Cleanup(func() {
			if err := pc.Close(); err != nil {
				t.Error(err)
			}
		})
	}
	proc, err := p.pc.Start(p.i)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	p.done = done
	go func() {
		<-proc.Done()
		p.exitCode = proc.ExitCode()
		close(done)
	}()
}

// signal sends s to p's process by its pid.
func (p *proc) signal(s syscall.Signal) {
	if proc := p.pc.Process(p.i); proc != nil {
		_ = proc.Signal(s)
	}
}

// kill kills p's process and waits for it to be gone.
func (p *proc) kill() { _ = p.pc.Kill(p.i) }

func (p *proc) get(path string) (int, string, error) {
	cl := http.Client{Timeout: 2 * time.Second}
	resp, err := cl.Get("http://" + p.httpAddr + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func (c *cluster) statusJSON(t *testing.T, extra ...string) (statusReport, result) {
	t.Helper()
	r := raftelect(t, append([]string{"status", "--config", c.nodes[0].cfg, "-o", "json"}, extra...)...)
	var rep statusReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("status -o json: %v\nstdout: %s\nstderr: %s", err, r.stdout, r.stderr)
	}
	return rep, r
}

func (c *cluster) node(name string) *proc {
	for _, p := range c.nodes {
		if p.name == name {
			return p
		}
	}
	return nil
}

// metricValue reads one sample from a /metrics body; -1 if absent.
func metricValue(body, series string) float64 {
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return -1
}

func TestThreeNodesElectReportAndFailOver(t *testing.T) {
	c := startCluster(t)

	// Every node ready: each knows a leader. A fresh node waits out its
	// vote guard (2 election timeouts) before an election can finish.
	for _, p := range c.nodes {
		eventually(t, 20*time.Second, p.name+" /readyz 200", func() error {
			code, body, err := p.get("/readyz")
			if err != nil {
				return err
			}
			if code != 200 {
				return fmt.Errorf("%d %s", code, body)
			}
			return nil
		})
		if code, _, err := p.get("/healthz"); err != nil || code != 200 {
			t.Errorf("%s /healthz: %d %v", p.name, code, err)
		}
	}

	// status, JSON: one leader every node agrees on, in one term.
	var rep statusReport
	eventually(t, 10*time.Second, "status agrees on one leader", func() error {
		var r result
		rep, r = c.statusJSON(t)
		if r.code != 0 || !rep.Agreed {
			return fmt.Errorf("exit %d: %s", r.code, r.stderr)
		}
		return nil
	})
	leaders := 0
	for _, n := range rep.Nodes {
		if n.Role == "leader" {
			leaders++
		}
		if n.Term != rep.Term || n.Leader != rep.Leader {
			t.Errorf("node %s: term %d leader %s; cluster: term %d leader %s", n.Name, n.Term, n.Leader, rep.Term, rep.Leader)
		}
	}
	if leaders != 1 || rep.ViewFrom != rep.Leader {
		t.Fatalf("want one leader and its view: %+v", rep)
	}
	leader := c.node(rep.Leader)

	// status, table.
	r := raftelect(t, "status", "--config", c.nodes[0].cfg)
	t.Logf("raftelect status:\n%s", r.stdout)
	if r.code != 0 {
		t.Fatalf("status exit %d: %s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if !regexp.MustCompile(`^NODE\s+ADDRESS\s+ROLE\s+TERM\s+LEADER\s+LEASE\s+REACHABLE\s+LAST-CONTACT\s+RTT\s+QUEUE\s+DROPS\s+CONFIG$`).MatchString(lines[0]) {
		t.Errorf("header: %q", lines[0])
	}
	roles := map[string]int{}
	for _, l := range lines[1:4] {
		f := strings.Fields(l)
		roles[f[2]]++
		if cfg := f[len(f)-1]; (f[2] == "leader") != (cfg == "-") || (f[2] != "leader" && cfg != "ok") {
			t.Errorf("row %q: CONFIG %q, want ok for a follower that agrees with the leader, - for the leader", l, cfg)
		}
		if f[3] != strconv.FormatUint(rep.Term, 10) || f[4] != rep.Leader {
			t.Errorf("row %q: want term %d leader %s", l, rep.Term, rep.Leader)
		}
	}
	if roles["leader"] != 1 || roles["follower"] != 2 {
		t.Errorf("roles in table: %v", roles)
	}
	if want := "peer columns: as seen from " + rep.Leader + " (the leader)"; lines[4] != want {
		t.Errorf("footer %q, want %q", lines[4], want)
	}

	// /metrics: every family present.
	_, body, err := leader.get("/metrics")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{
		"raftelect_peer_messages_sent_total", "raftelect_peer_messages_received_total",
		"raftelect_peer_dropped_messages_total", "raftelect_peer_send_latency_seconds_bucket",
		"raftelect_peer_queue_depth", "raftelect_peer_reachable", "raftelect_peer_rtt_seconds",
		"raftelect_is_leader", "raftelect_term", "raftelect_leader_changes_total",
		"raftelect_elections_started_total", "raftelect_peer_config_mismatch", "go_goroutines",
	} {
		if !strings.Contains(body, "\n"+name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	if v := metricValue(body, "raftelect_is_leader"); v != 1 {
		t.Errorf("leader's raftelect_is_leader = %v", v)
	}

	// A hung follower (SIGSTOP: its kernel keeps the connections open):
	// the leader's sends to it time out and it shows unreachable; nobody
	// campaigns. (Drops need not rise: an idle cluster sends only
	// heartbeats, and a queued heartbeat is replaced by the next, not
	// dropped.)
	var hung *proc
	for _, p := range c.nodes {
		if p != leader {
			hung = p
			break
		}
	}
	hung.signal(syscall.SIGSTOP)
	eventually(t, 10*time.Second, "send timeouts to a hung peer", func() error {
		_, body, err := leader.get("/metrics")
		if err != nil {
			return err
		}
		drops := metricValue(body, `raftelect_peer_dropped_messages_total{peer="`+hung.name+`"}`)
		timeouts := metricValue(body, `raftelect_peer_send_errors_total{class="timeout",peer="`+hung.name+`"}`)
		reachable := metricValue(body, `raftelect_peer_reachable{peer="`+hung.name+`"}`)
		if drops < 0 || timeouts <= 0 || reachable != 0 {
			return fmt.Errorf("drops %v, timeouts %v, reachable %v", drops, timeouts, reachable)
		}
		return nil
	})
	hung.signal(syscall.SIGCONT)
	eventually(t, 10*time.Second, "hung peer reachable again", func() error {
		_, body, err := leader.get("/metrics")
		if err != nil {
			return err
		}
		if v := metricValue(body, `raftelect_peer_reachable{peer="`+hung.name+`"}`); v != 1 {
			return fmt.Errorf("reachable %v", v)
		}
		return nil
	})
	if after, _ := c.statusJSON(t); after.Leader != rep.Leader || after.Term != rep.Term {
		t.Errorf("a hung follower changed the leadership: %s/%d -> %s/%d", rep.Leader, rep.Term, after.Leader, after.Term)
	}

	// SIGTERM the leader: it hands over (its log says so), another node
	// leads, and it exits 0. How fast is a figure, logged here and
	// measured by the chaos benchmark (SIGTERM failover), not asserted: on
	// two shared cores a wall-clock bound here fails for the machine's
	// load, not for the code.
	stopped := time.Now()
	leader.signal(syscall.SIGTERM)
	var others []*proc
	for _, p := range c.nodes {
		if p != leader {
			others = append(others, p)
		}
	}
	var newLeader string
	eventually(t, 30*time.Second, "a new leader after SIGTERM", func() error {
		for _, p := range others {
			code, body, err := p.get("/readyz")
			if err != nil || code != 200 || strings.Contains(body, "leader "+leader.name+",") {
				return fmt.Errorf("%s: %d %q %v", p.name, code, body, err)
			}
			newLeader = strings.TrimSuffix(strings.Fields(body)[2], ",")
		}
		return nil
	})
	t.Logf("graceful failover %s -> %s seen in %v", leader.name, newLeader, time.Since(stopped))
	select {
	case <-leader.done:
	case <-time.After(10 * time.Second):
		t.Fatal("leader did not exit after SIGTERM")
	}
	if leader.exitCode != 0 {
		t.Errorf("leader exit code %d after SIGTERM, want 0", leader.exitCode)
	}
	logb, _ := os.ReadFile(leader.log)
	if !bytes.Contains(logb, []byte(`"msg":"transferring leadership"`)) {
		t.Errorf("the stopping leader did not log a transfer:\n%s", logb)
	}

	// status with a node down: it shows UNREACHABLE with its class, and
	// exits 1; it does not hang (statusHangBound).
	began := time.Now()
	r = raftelect(t, "status", "--config", c.nodes[0].cfg, "--timeout", "1s")
	if took := time.Since(began); took > statusHangBound {
		t.Errorf("status --timeout 1s with a node down took %v: it hangs", took)
	}
	if r.code != 1 || !strings.Contains(r.stdout, leader.name+" ") || !strings.Contains(r.stdout, "UNREACHABLE:unavailable") {
		t.Errorf("status with %s down: exit %d\n%s%s", leader.name, r.code, r.stdout, r.stderr)
	}

	// A second signal exits at once. Make the graceful stop slow: hang the
	// only follower, so the leader's transfer waits for a peer that cannot
	// answer; signal again while it waits.
	second := c.node(newLeader)
	var follower *proc
	for _, p := range others {
		if p != second {
			follower = p
		}
	}
	follower.signal(syscall.SIGSTOP)
	defer follower.signal(syscall.SIGCONT)
	firstSignal := time.Now()
	second.signal(syscall.SIGTERM)
	eventually(t, 5*time.Second, "the leader starts its hand-over", func() error {
		b, _ := os.ReadFile(second.log)
		if !bytes.Contains(b, []byte(`"msg":"transferring leadership"`)) {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	// A repeat of the same signal within duplicateSignalWindow is taken for
	// a supervisor signalling the process group too, not as a second
	// signal: wait that out from the first, then signal again.
	if wait := time.Until(firstSignal.Add(duplicateSignalWindow + 50*time.Millisecond)); wait > 0 {
		time.Sleep(wait)
	}
	second.signal(syscall.SIGTERM)
	// That it ended at once, not after a finished hand-over, is what the
	// exit code 1 and the log line below show; the limit only catches a
	// process that does not end.
	select {
	case <-second.done:
	case <-time.After(30 * time.Second):
		t.Fatal("second signal did not end the process")
	}
	b, _ := os.ReadFile(second.log)
	if second.exitCode != 1 || !bytes.Contains(b, []byte("second signal")) {
		t.Errorf("after a second signal: exit %d, log:\n%s", second.exitCode, b)
	}
}

// statusHangBound tells a status that hangs from one that keeps its
// --timeout: far above any timeout the tests give (1s at most) plus the
// start of the binary on a loaded machine, far below forever. A liveness
// bound, not a figure: the deadline itself is checked by the error class
// (timeout) the silent node gets.
const statusHangBound = 20 * time.Second

// TestStatusNeverHangs: a node that accepts connections and never answers
// (a hung process) shows as UNREACHABLE:timeout within the deadline.
func TestStatusNeverHangs(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close() // hold it open, say nothing
		}
	}()
	dead := freePorts(t, 1)[0]
	began := time.Now()
	r := raftelect(t, "status", "--insecure", "--timeout", "500ms", "-o", "json",
		"--peers", fmt.Sprintf("n1=%s,n2=127.0.0.1:%d", l.Addr(), dead))
	if took := time.Since(began); took > statusHangBound {
		t.Errorf("status took %v with a 500ms timeout: it hangs", took)
	}
	var rep statusReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("%v: %s %s", err, r.stdout, r.stderr)
	}
	if r.code != 1 || rep.Agreed {
		t.Errorf("exit %d agreed %v", r.code, rep.Agreed)
	}
	if got := rep.Nodes[0].ErrorClass; got != "timeout" {
		t.Errorf("silent node: class %q (%s), want timeout", got, rep.Nodes[0].Error)
	}
	if got := rep.Nodes[1].ErrorClass; got != "unavailable" {
		t.Errorf("closed port: class %q (%s), want unavailable", got, rep.Nodes[1].Error)
	}
}

// TestBadConfigsExitWithDocumentedErrors: an invalid configuration is exit
// code 2 with the field named, before anything starts.
func TestBadConfigsExitWithDocumentedErrors(t *testing.T) {
	dir := t.TempDir()
	valid := `name: n1
peers:
  - {name: n1, address: 127.0.0.1:1}
  - {name: n2, address: 127.0.0.1:2}
  - {name: n3, address: 127.0.0.1:3}
heartbeat_interval: 100ms
election_timeout: 1s
insecure: true
`
	tests := []struct {
		name string
		body string
		args []string
		env  []string
		want string
	}{
		{"unknown field", valid + "electon_timeout: 2s\n", nil, nil, `:9: electon_timeout: unknown field "electon_timeout"`},
		{"bad address", strings.Replace(valid, "127.0.0.1:2", "x", 1), nil, nil, `:4: peers[1].address: "x" is not host:port`},
		{"timeout too short", strings.Replace(valid, "election_timeout: 1s", "election_timeout: 200ms", 1), nil, nil, `:7: election_timeout: 200ms must be more than twice heartbeat_interval (100ms)`},
		{"no tls", strings.Replace(valid, "insecure: true\n", "", 1), nil, nil, `tls.ca_file: empty; mutual TLS needs`},
		{"flag override is checked", valid, []string{"--log-format", "xml"}, nil, `log.format (from --log-format): "xml" is not text or json`},
		{"env override is checked", valid, nil, []string{"RAFTELECT_NAME=n7"}, `name (from RAFTELECT_NAME): "n7" is not among peers`},
		{"missing file", "", []string{"--config", filepath.Join(dir, "nope.yaml")}, nil, "read config: open"},
		{"unknown flag", valid, []string{"--nmae", "x"}, nil, "unknown flag: --nmae"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, fmt.Sprintf("c%d.yaml", i))
			if err := os.WriteFile(path, []byte(tt.body), 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(binary, append([]string{"run", "--config", path}, tt.args...)...)
			cmd.Env = append(os.Environ(), tt.env...)
			out, err := cmd.CombinedOutput()
			ee, ok := err.(*exec.ExitError)
			if !ok || ee.ExitCode() != 2 {
				t.Fatalf("err %v, want exit code 2; output:\n%s", err, out)
			}
			if !strings.Contains(string(out), tt.want) {
				t.Errorf("output:\n%s\nwant it to contain: %s", out, tt.want)
			}
		})
	}
}

func TestCertsRefuseToOverwrite(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"certs", "init", "--dir", dir},
		{"certs", "issue", "--dir", dir, "--name", "n1", "--host", "127.0.0.1"},
	} {
		if r := raftelect(t, args...); r.code != 0 {
			t.Fatalf("%v: %+v", args, r)
		}
		before, _ := os.ReadFile(filepath.Join(dir, "ca.crt"))
		r := raftelect(t, args...)
		if r.code != 2 || !strings.Contains(r.stderr, "exists; not overwriting it without --force") {
			t.Errorf("second %v: %+v", args, r)
		}
		if after, _ := os.ReadFile(filepath.Join(dir, "ca.crt")); !bytes.Equal(before, after) {
			t.Errorf("%v overwrote ca.crt", args)
		}
		if r := raftelect(t, append(args, "--force")...); r.code != 0 {
			t.Errorf("%v --force: %+v", args, r)
		}
	}
	if r := raftelect(t, "certs", "issue", "--dir", t.TempDir(), "--name", "n1"); r.code != 2 || !strings.Contains(r.stderr, "certs init") {
		t.Errorf("issue without a CA: %+v", r)
	}
}

// A second node on a data directory that a running node holds fails at once
// with exit code 1 and says why; it never panics.
func TestDataDirInUseFailsCleanly(t *testing.T) {
	dir := t.TempDir()
	cfg, ports := loneNodeConfig(t, dir, nil)
	first := &proc{name: "n1", cfg: cfg, log: filepath.Join(dir, "first.log")}
	first.start(t)
	t.Cleanup(first.kill)
	eventually(t, 10*time.Second, "the first node to lock its data directory", func() error {
		if _, err := os.Stat(filepath.Join(dir, "data", "raft.db")); err != nil {
			return err
		}
		return nil
	})
	r := raftelect(t, "run", "--config", cfg, "--name", "n2", "--listen-address", fmt.Sprintf("127.0.0.1:%d", ports[1]))
	if r.code != 1 {
		t.Fatalf("exit code %d, want 1; stderr:\n%s", r.code, r.stderr)
	}
	if strings.Contains(r.stderr, "panic") || !strings.Contains(r.stderr, "in use by another raftelect process") {
		t.Fatalf("stderr does not say the data directory is in use:\n%s", r.stderr)
	}
}

// TestRunUnderGNUTimeoutStopsCleanly: GNU timeout signals its child and
// then its whole process group, so run gets SIGTERM twice at once; that is
// one request to stop, not the "second signal" that exits at once. Under
// `timeout --preserve-status`, run stops cleanly and exits 0.
func TestRunUnderGNUTimeoutStopsCleanly(t *testing.T) {
	tpath, err := exec.LookPath("timeout")
	if err != nil {
		t.Skip("GNU timeout (coreutils) is not installed; skipping")
	}
	dir := t.TempDir()
	lc, err := writeLocalCluster(dir, 1, 100*time.Millisecond, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	n := lc.nodes[0]
	var out lockedBuffer
	cmd := exec.Command(tpath, "--preserve-status", "600", binary, "run", "--config", n.config)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-done })
	p := &proc{httpAddr: n.httpAddr}
	eventually(t, 30*time.Second, "the node is ready", func() error {
		code, body, err := p.get("/readyz")
		if err != nil || code != 200 {
			return fmt.Errorf("%d %s %v", code, body, err)
		}
		return nil
	})
	// SIGALRM makes timeout act as if its time were up: SIGTERM to the
	// child, then to the process group.
	if err := cmd.Process.Signal(syscall.SIGALRM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("run under timeout did not stop; output:\n%s", out.String())
	}
	if code := cmd.ProcessState.ExitCode(); code != 0 || strings.Contains(out.String(), "second signal") || !strings.Contains(out.String(), "msg=stopped") {
		t.Errorf("under timeout: exit %d, want 0 after a clean stop; output:\n%s", code, out.String())
	}
}
