package multicluster_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"go.uber.org/goleak"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/raftelect/raftelect/certs"
	"github.com/raftelect/raftelect/election"
	"github.com/raftelect/raftelect/k8s/internal/controlplanes"
	"github.com/raftelect/raftelect/k8s/leasemirror"
)

func TestMain(m *testing.M) {
	if path := os.Getenv(operatorEnv); path != "" {
		os.Exit(runOperator(path))
	}
	ctrl.SetLogger(logr.Discard()) // envtest logs through it
	goleak.VerifyTestMain(m)
}

// proc is one run of an operator process.
type proc struct {
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	done  chan struct{} // closed when it has exited
	err   error
}

// fleet is the three operators, each beside its own control plane.
type fleet struct {
	t       *testing.T
	bin     string
	dir     string
	cfgs    map[string]string // node -> operatorConfig path
	lis     map[string]*os.File
	names   []string
	mu      sync.Mutex
	procs   map[string]*proc
	leading map[string]uint64 // node -> token, from the operators' reports
	reports []report
	planes  []*controlplanes.Plane
	// stopWatch ends the history's watches (idempotent).
	stopWatch func()
}

func (f *fleet) start(name string) {
	f.t.Helper()
	cmd := exec.Command(f.bin, "-test.run=^$")
	cmd.Env = append(os.Environ(), operatorEnv+"="+f.cfgs[name])
	cmd.ExtraFiles = []*os.File{f.lis[name]}
	logf, err := os.OpenFile(filepath.Join(f.dir, name+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		f.t.Fatal(err)
	}
	cmd.Stderr = logf
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		f.t.Fatal(err)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		f.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		f.t.Fatal(err)
	}
	p := &proc{name: name, cmd: cmd, stdin: stdin, done: make(chan struct{})}
	f.mu.Lock()
	f.procs[name] = p
	f.mu.Unlock()
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var r report
			if json.Unmarshal(sc.Bytes(), &r) != nil {
				continue
			}
			f.mu.Lock()
			f.reports = append(f.reports, r)
			switch r.Event {
			case "leading":
				f.leading[r.Node] = r.Token
			case "stopped":
				delete(f.leading, r.Node)
			}
			f.mu.Unlock()
		}
		p.err = cmd.Wait()
		logf.Close()
		f.mu.Lock()
		delete(f.leading, name) // a dead process leads nothing
		f.mu.Unlock()
		close(p.done)
	}()
}

func (f *fleet) send(name, line string) {
	f.mu.Lock()
	p := f.procs[name]
	f.mu.Unlock()
	fmt.Fprintln(p.stdin, line)
}

// wait waits for name's process to exit.
func (f *fleet) wait(name string, within time.Duration) error {
	f.t.Helper()
	f.mu.Lock()
	p := f.procs[name]
	f.mu.Unlock()
	select {
	case <-p.done:
		return p.err
	case <-time.After(within):
		f.t.Fatalf("operator %s did not exit within %v (log: %s)", name, within, filepath.Join(f.dir, name+".log"))
		return nil
	}
}

// stopAll stops every running operator gracefully, then kills what is left.
func (f *fleet) stopAll() {
	f.mu.Lock()
	ps := make([]*proc, 0, len(f.procs))
	for _, p := range f.procs {
		ps = append(ps, p)
	}
	f.mu.Unlock()
	for _, p := range ps {
		p.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, p := range ps {
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			f.t.Errorf("operator %s ignored SIGTERM for 30s; killing it", p.name)
			p.cmd.Process.Kill()
			<-p.done
		}
	}
}

// leader returns the one node whose reconciler runs now, "" if none; two
// at once fail the test (the history check says more).
func (f *fleet) leader() (string, uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.leading) > 1 {
		f.t.Errorf("two reconcilers run at once: %v", f.leading)
	}
	for n, tok := range f.leading {
		return n, tok
	}
	return "", 0
}

func (f *fleet) waitLeader(within time.Duration, not string) (string, uint64) {
	f.t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if n, tok := f.leader(); n != "" && n != not {
			return n, tok
		}
		time.Sleep(10 * time.Millisecond)
	}
	f.t.Fatalf("no leader other than %q within %v (logs in %s)", not, within, f.dir)
	return "", 0
}

// history records every version of the demo ConfigMap and of the Lease in
// one cluster, in the API server's order, from a watch that resumes where
// it stopped.
type history struct {
	mu     sync.Mutex
	writes []write
	leases []leaseVersion
}

type write struct {
	cluster, writer string
	token           uint64
	seq             int
	stamp           int64 // the writer's clock when it sent the write
	rv              string
}

type leaseVersion struct {
	cluster, holder string
	term            uint64
	renew           time.Time
}

func record[T any](ctx context.Context, t *testing.T, c kubernetes.Interface, name string, list func(context.Context, metav1.ListOptions) (string, error),
	w func(context.Context, metav1.ListOptions) (watch.Interface, error), on func(T), wg *sync.WaitGroup) {
	sel := fields.OneTermEqualSelector("metadata.name", name).String()
	rv, err := list(ctx, metav1.ListOptions{FieldSelector: sel})
	if err != nil {
		t.Fatal(err)
	}
	rw, err := watchtools.NewRetryWatcherWithContext(ctx, rv, &cache.ListWatch{
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = sel
			return w(ctx, o)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer rw.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-rw.ResultChan():
				if !ok {
					return
				}
				if o, ok := ev.Object.(T); ok && (ev.Type == watch.Added || ev.Type == watch.Modified) {
					on(o)
				}
			}
		}
	}()
}

func (h *history) watch(ctx context.Context, t *testing.T, cluster string, c kubernetes.Interface, wg *sync.WaitGroup) {
	cms := c.CoreV1().ConfigMaps(namespace)
	record(ctx, t, c, objName, func(ctx context.Context, o metav1.ListOptions) (string, error) {
		l, err := cms.List(ctx, o)
		if err != nil {
			return "", err
		}
		return l.ResourceVersion, nil
	}, cms.Watch, func(cm *corev1.ConfigMap) {
		tok, _ := strconv.ParseUint(cm.Data["token"], 10, 64)
		seq, _ := strconv.Atoi(cm.Data["seq"])
		stamp, _ := strconv.ParseInt(cm.Data["stamp"], 10, 64)
		h.mu.Lock()
		h.writes = append(h.writes, write{cluster, cm.Data["writer"], tok, seq, stamp, cm.ResourceVersion})
		h.mu.Unlock()
	}, wg)
	leases := c.CoordinationV1().Leases(namespace)
	record(ctx, t, c, leaseName, func(ctx context.Context, o metav1.ListOptions) (string, error) {
		l, err := leases.List(ctx, o)
		if err != nil {
			return "", err
		}
		return l.ResourceVersion, nil
	}, leases.Watch, func(l *coordinationv1.Lease) {
		term, _ := strconv.ParseUint(l.Annotations[leasemirror.TermAnnotation], 10, 64)
		v := leaseVersion{cluster: cluster, term: term}
		if l.Spec.HolderIdentity != nil {
			v.holder = *l.Spec.HolderIdentity
		}
		if l.Spec.RenewTime != nil {
			v.renew = l.Spec.RenewTime.Time
		}
		h.mu.Lock()
		h.leases = append(h.leases, v)
		h.mu.Unlock()
	}, wg)
}

// firstWrite returns the stamp of writer's first write at or after since.
func (h *history) firstWrite(writer string, since int64) (int64, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, w := range h.writes {
		if w.writer == writer && w.stamp >= since {
			return w.stamp, true
		}
	}
	return 0, false
}

// lastWrite returns the stamp of writer's last write, 0 if none.
func (h *history) lastWrite(writer string) int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	var last int64
	for _, w := range h.writes {
		if w.writer == writer {
			last = max(last, w.stamp)
		}
	}
	return last
}

// written reports whether every cluster has at least n writes by writer
// with token.
func (h *history) written(clusters []string, writer string, token uint64, n int) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	count := map[string]int{}
	for _, w := range h.writes {
		if w.writer == writer && w.token == token {
			count[w.cluster]++
		}
	}
	for _, c := range clusters {
		if count[c] < n {
			return false
		}
	}
	return true
}

// tenure is one holder's writes: from its first to its last stamp.
type tenure struct {
	writer      string
	token       uint64
	first, last int64
	n           int
}

// check verifies the invariants over the whole history and returns the
// tenures in time order: in each cluster, in the API server's order, the
// token never decreases and one token has one writer; across clusters, no
// two tenures overlap in time (no two managers ever wrote in the same
// instant) and tokens increase from one tenure to the next; every Lease
// version names, with its term, a node that wrote as leader in that term
// (followers never wrote it), and Lease terms never decrease.
func (h *history) check(errorf func(format string, args ...any)) []tenure {
	h.mu.Lock()
	defer h.mu.Unlock()
	owner := map[uint64]string{}
	last := map[string]write{}
	byKey := map[string]*tenure{}
	for _, w := range h.writes {
		if p, ok := last[w.cluster]; ok && w.token < p.token {
			errorf("cluster %s: token went down from %d (%s, rv %s) to %d (%s, rv %s)", w.cluster, p.token, p.writer, p.rv, w.token, w.writer, w.rv)
		}
		last[w.cluster] = w
		if o, ok := owner[w.token]; ok && o != w.writer {
			errorf("token %d written by both %s and %s", w.token, o, w.writer)
		}
		owner[w.token] = w.writer
		key := fmt.Sprintf("%s/%d", w.writer, w.token)
		tn := byKey[key]
		if tn == nil {
			tn = &tenure{writer: w.writer, token: w.token, first: w.stamp, last: w.stamp}
			byKey[key] = tn
		}
		tn.first, tn.last, tn.n = min(tn.first, w.stamp), max(tn.last, w.stamp), tn.n+1
	}
	var ts []tenure
	for _, tn := range byKey {
		ts = append(ts, *tn)
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i].first < ts[j].first })
	for i := 1; i < len(ts); i++ {
		a, b := ts[i-1], ts[i]
		if b.first <= a.last {
			errorf("%s (token %d) wrote from %s while %s (token %d) wrote until %s: two managers wrote at once",
				b.writer, b.token, stamp(b.first), a.writer, a.token, stamp(a.last))
		}
		if b.token <= a.token {
			errorf("token went from %d (%s) to %d (%s) across tenures", a.token, a.writer, b.token, b.writer)
		}
	}
	lastTerm := map[string]uint64{}
	for _, l := range h.leases {
		if o := owner[l.term]; o != l.holder {
			errorf("cluster %s: the Lease names %q in term %d, but %q led in that term", l.cluster, l.holder, l.term, o)
		}
		if l.term < lastTerm[l.cluster] {
			errorf("cluster %s: the Lease's term went down from %d to %d", l.cluster, lastTerm[l.cluster], l.term)
		}
		lastTerm[l.cluster] = l.term
	}
	return ts
}

func stamp(ns int64) string { return time.Unix(0, ns).Format("15:04:05.000000") }

// TestThreeClustersOneWriterAtATime runs three real control planes (etcd
// and kube-apiserver, one per "cluster") and three operator processes, each
// a controller-runtime manager against its own API server beside its own
// raftelect node, electing one leader through raftelect's resource lock.
// The leader reconciles a ConfigMap in all three clusters, writing its
// fencing token each time, and mirrors its leadership into a Lease in each.
// The leader's node is then cut off from its peers, a leader process is
// killed (SIGKILL), and a leader's manager is stopped gracefully (SIGTERM);
// each takeover time is logged. From the objects' history in the three API
// servers: no two managers ever wrote in the same instant, tokens only
// increase, and the Lease only ever named the leader of its term.
func TestThreeClustersOneWriterAtATime(t *testing.T) {
	f, h := setup(t, false)
	defer f.stopAll()

	first, tok1 := f.waitLeader(60*time.Second, "")
	t.Logf("first leader: %s (token %d)", first, tok1)
	f.settle(h, first, tok1)
	t.Logf("kubectl get lease -n %s (cluster n1, while %s leads):\n%s", namespace, first,
		f.planes[0].Kubectl(t, "get", "lease", "-n", namespace))
	t.Logf("the same with the term and renew time:\n%s", f.planes[0].Kubectl(t, "get", "lease", "-n", namespace,
		"-o", `custom-columns=NAME:.metadata.name,HOLDER:.spec.holderIdentity,TERM:.metadata.annotations.raftelect\.io/term,RENEWED:.spec.renewTime`))

	// Cut the leader's node off from its peers: its API server stays
	// reachable, so its manager writes until its leadership runs out.
	t0 := time.Now().UnixNano()
	f.send(first, "ingress - on")
	for _, n := range f.names {
		if n != first {
			f.send(n, "from "+first+" on")
		}
	}
	second, tok2 := f.waitLeader(60*time.Second, first)
	f.logTakeover(h, "cut off", first, second, tok2, t0)
	// Its manager exits with "leader election lost", as controller-runtime
	// operators do; restart it healed, as the kubelet would.
	if err := f.wait(first, 30*time.Second); err == nil {
		t.Errorf("the cut-off leader's operator exited cleanly; want the manager's leader election lost error")
	}
	for _, n := range f.names {
		if n != first {
			f.send(n, "from "+first+" off")
		}
	}
	f.start(first)
	f.settle(h, second, tok2)

	// Kill the leader's process.
	t1 := time.Now().UnixNano()
	f.mu.Lock()
	f.procs[second].cmd.Process.Kill()
	f.mu.Unlock()
	f.wait(second, 30*time.Second)
	third, tok3 := f.waitLeader(60*time.Second, second)
	f.logTakeover(h, "killed", second, third, tok3, t1)
	f.start(second)
	f.settle(h, third, tok3)

	// Stop the leader's manager gracefully: it releases, and its node
	// transfers raftelect leadership at once.
	t2 := time.Now().UnixNano()
	f.mu.Lock()
	f.procs[third].cmd.Process.Signal(syscall.SIGTERM)
	f.mu.Unlock()
	fourth, tok4 := f.waitLeader(60*time.Second, third)
	f.logTakeover(h, "stopped gracefully", third, fourth, tok4, t2)
	if err := f.wait(third, 30*time.Second); err != nil {
		t.Errorf("the gracefully stopped operator exited with %v, want success", err)
	}
	f.settle(h, fourth, tok4)
	t.Logf("kubectl get lease -n %s (cluster n2, after the takeovers):\n%s", namespace,
		f.planes[1].Kubectl(t, "get", "lease", "-n", namespace, leaseName))
	f.stopAll()
	f.stopWatch()

	ts := h.check(t.Errorf)
	h.mu.Lock()
	t.Logf("history: %d writes and %d Lease versions in 3 API servers", len(h.writes), len(h.leases))
	h.mu.Unlock()
	for i, tn := range ts {
		gap := ""
		if i > 0 {
			gap = fmt.Sprintf(", %v after the previous holder's last write", time.Duration(tn.first-ts[i-1].last).Round(time.Millisecond))
		}
		t.Logf("tenure %d: %s token %d, %d writes from %s to %s%s", i+1, tn.writer, tn.token, tn.n, stamp(tn.first), stamp(tn.last), gap)
	}
	if len(ts) < 4 {
		t.Errorf("%d tenures in the history, want at least 4 (one per leader)", len(ts))
	}
}

// TestHistoryCheckCatchesTwoWriters runs the deliberately broken variant,
// reconcilers that do not need leader election, and requires the history
// check to find the overlap: the check above can fail.
func TestHistoryCheckCatchesTwoWriters(t *testing.T) {
	f, h := setup(t, true)
	defer f.stopAll()
	deadline := time.Now().Add(60 * time.Second)
	for {
		h.mu.Lock()
		writers := map[string]bool{}
		for _, w := range h.writes {
			writers[w.writer] = true
		}
		h.mu.Unlock()
		if len(writers) >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("fewer than two writers within 60s (logs in %s)", f.dir)
		}
		time.Sleep(20 * time.Millisecond)
	}
	f.stopAll()
	f.stopWatch()
	var found []string
	h.check(func(format string, args ...any) { found = append(found, fmt.Sprintf(format, args...)) })
	if len(found) == 0 {
		t.Fatal("the history check found nothing wrong with two unfenced writers")
	}
	t.Logf("the history check caught the broken variant with %d findings:\n%s", len(found), strings.Join(found[:min(len(found), 4)], "\n"))
}

// settle waits until leader has written with token in every cluster a few
// times and the Lease in every cluster names it, so that each fault hits a
// leader in full swing.
func (f *fleet) settle(h *history, leader string, token uint64) {
	f.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !h.written(f.names, leader, token, 10) {
		if time.Now().After(deadline) {
			f.t.Fatalf("%s (token %d) did not write 10 times in every cluster within 30s", leader, token)
		}
		time.Sleep(10 * time.Millisecond)
	}
	waitLease(f.t, f, leader, token)
}

func (f *fleet) logTakeover(h *history, how, from, to string, token uint64, since int64) {
	f.t.Helper()
	if d := time.Duration(h.lastWrite(from) - since).Round(time.Millisecond); d >= 0 {
		f.t.Logf("leader %s %s: it went on writing for %v", from, how, d)
	} else {
		f.t.Logf("leader %s %s: its last write was sent %v before", from, how, -d)
	}
	var first int64
	deadline := time.Now().Add(30 * time.Second)
	for ok := false; !ok; {
		if first, ok = h.firstWrite(to, since); !ok && time.Now().After(deadline) {
			f.t.Fatalf("%s's first write as leader never reached the API servers", to)
		}
		time.Sleep(5 * time.Millisecond)
	}
	f.t.Logf("leader %s %s: %s took over (token %d), first write %v after", from, how, to, token, time.Duration(first-since).Round(time.Millisecond))
}

// waitLease waits until the Lease in every cluster names holder in term.
func waitLease(t *testing.T, f *fleet, holder string, term uint64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, p := range f.planes {
		for {
			l, err := p.Client.CoordinationV1().Leases(namespace).Get(context.Background(), leaseName, metav1.GetOptions{})
			if err == nil && l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity == holder && l.Annotations[leasemirror.TermAnnotation] == strconv.FormatUint(term, 10) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("cluster %s: the Lease does not name %s in term %d within 30s (last: %v, %v)", p.Name, holder, term, err, l)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func setup(t *testing.T, unfenced bool) (*fleet, *history) {
	names := []string{"n1", "n2", "n3"}
	planes := controlplanes.Start(t, names...)
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ca, err := certs.NewCA("raftelect test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	f := &fleet{t: t, bin: bin, dir: dir, cfgs: map[string]string{}, lis: map[string]*os.File{}, names: names,
		procs: map[string]*proc{}, leading: map[string]uint64{}, planes: planes}
	var peers []election.PeerConfig
	for _, n := range names {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		fd, err := lis.(*net.TCPListener).File()
		if err != nil {
			t.Fatal(err)
		}
		lis.Close() // fd is a duplicate that keeps the socket listening
		f.lis[n] = fd
		t.Cleanup(func() { fd.Close() })
		peers = append(peers, election.PeerConfig{Name: n, Address: lis.Addr().String()})
	}
	kcs := map[string]string{}
	for _, p := range planes {
		kcs[p.Name] = p.Kubeconfig
	}
	for _, n := range names {
		files, err := ca.WriteNode(filepath.Join(dir, n), n, []string{"127.0.0.1"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		cfg := operatorConfig{Name: n, Peers: peers, TLS: election.TLSConfig{CAFile: files.CA, CertFile: files.Cert, KeyFile: files.Key},
			DataDir: filepath.Join(dir, n, "data"), Kubeconfigs: kcs, Unfenced: unfenced}
		raw, _ := json.Marshal(cfg)
		f.cfgs[n] = filepath.Join(dir, n+".json")
		if err := os.WriteFile(f.cfgs[n], raw, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	h := &history{}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, p := range planes {
		h.watch(ctx, t, p.Name, p.Client, &wg)
	}
	var once sync.Once
	f.stopWatch = func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(f.stopWatch)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("operator logs kept in %s", dir)
			for _, n := range names {
				if b, err := os.ReadFile(filepath.Join(dir, n+".log")); err == nil {
					t.Logf("--- %s (last 3000 bytes):\n%s", n, tail(string(b), 3000))
				}
			}
		}
	})
	for _, n := range names {
		f.start(n)
	}
	return f, h
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := len(s) - n
	if i := strings.IndexByte(s[cut:], '\n'); i >= 0 {
		cut += i + 1
	}
	return s[cut:]
}
