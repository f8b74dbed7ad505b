package multicluster_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/raftelect/raftelect/election"
	"github.com/raftelect/raftelect/internal/nodeopts"
	"github.com/raftelect/raftelect/k8s/leasemirror"
	"github.com/raftelect/raftelect/k8s/resourcelock"
	"github.com/raftelect/raftelect/storage"
	"github.com/raftelect/raftelect/transport"
)

// The operator process: what the test binary runs when started by the
// three-cluster test with operatorEnv set. It is a stock controller-runtime
// manager whose resource lock is raftelect's, beside its raftelect node,
// with two leader-only runnables: the reconciler, which writes the demo
// ConfigMap in every cluster, and the Lease mirror.

const (
	operatorEnv = "RAFTELECT_TEST_OPERATOR" // path of the operatorConfig JSON
	// Client-go timings: with a 100 ms heartbeat and 1 s election timeout,
	// StopBound is 800 ms and HandoverDelay 1 s.
	leaseDuration = 2 * time.Second
	renewDeadline = 600 * time.Millisecond
	retryPeriod   = 200 * time.Millisecond
	heartbeat     = 100 * time.Millisecond
	electionTO    = time.Second
	// writePeriod: the reconciler rewrites the object in every cluster this
	// often, so that the history is dense enough to show an overlap.
	writePeriod = 50 * time.Millisecond
	objName     = "raftelect-demo"
	leaseName   = "raftelect-leader"
	namespace   = "default"
)

type operatorConfig struct {
	Name    string
	Peers   []election.PeerConfig
	TLS     election.TLSConfig
	DataDir string
	// Kubeconfigs of every member's cluster, by member name; the manager
	// runs against the one of Name.
	Kubeconfigs map[string]string
	// Unfenced makes the reconciler run on every node, leader or not: the
	// deliberately broken variant that the history check must catch.
	Unfenced bool
}

// report is one line the operator prints on stdout for the test.
type report struct {
	Node  string `json:"node"`
	Event string `json:"event"` // ready, leading, stopped
	Token uint64 `json:"token,omitempty"`
	Time  int64  `json:"time"` // wall clock, UnixNano
}

type reporter struct {
	mu   sync.Mutex
	node string
	enc  *json.Encoder
}

func (r *reporter) emit(event string, token uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.enc.Encode(report{Node: r.node, Event: event, Token: token, Time: time.Now().UnixNano()})
}

// runOperator runs until SIGTERM (graceful: the manager releases and the
// node transfers), until the manager loses leadership (it exits 1, as a
// controller-runtime operator does, to be restarted), or until stdin closes.
func runOperator(path string) int {
	klog.SetLogger(logr.Discard())
	ctrl.SetLogger(logr.Discard())
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := operator(path, log); err != nil {
		log.Error("operator exiting", "err", err)
		return 1
	}
	return 0
}

func operator(path string, log *slog.Logger) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var cfg operatorConfig
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return err
	}
	rep := &reporter{node: cfg.Name, enc: json.NewEncoder(os.Stdout)}
	// The test keeps the listening socket and hands it to every run of
	// this node as fd 3, so the address survives restarts.
	lis, err := net.FileListener(os.NewFile(3, "listener"))
	if err != nil {
		return fmt.Errorf("listener fd 3: %w", err)
	}
	st, err := storage.OpenBolt(cfg.DataDir, storage.BoltOptions{})
	if err != nil {
		return err
	}
	defer st.Close()
	hooks := &transport.FaultHooks{}
	ecfg := election.Config{
		Name: cfg.Name, Peers: cfg.Peers, TLS: cfg.TLS, Storage: st,
		HeartbeatInterval: heartbeat, ElectionTimeout: electionTO, Logger: log,
	}
	*nodeopts.Of(&ecfg) = nodeopts.Options{Listener: lis, FaultHooks: hooks}
	elector, err := election.New(ecfg)
	if err != nil {
		return err
	}
	lock, err := resourcelock.New(resourcelock.Config{
		Elector: elector, LeaseDuration: leaseDuration, RenewDeadline: renewDeadline, RetryPeriod: retryPeriod, Logger: log,
	})
	if err != nil {
		return err
	}
	clusters := map[string]kubernetes.Interface{}
	for name, kc := range cfg.Kubeconfigs {
		rc, err := clientcmd.BuildConfigFromFlags("", kc)
		if err != nil {
			return err
		}
		rc.UserAgent = "raftelect-test/" + cfg.Name
		c, err := kubernetes.NewForConfig(rc)
		if err != nil {
			return err
		}
		clusters[name] = c
	}
	own, err := clientcmd.BuildConfigFromFlags("", cfg.Kubeconfigs[cfg.Name])
	if err != nil {
		return err
	}
	ld, rd, rp := leaseDuration, renewDeadline, retryPeriod
	mgr, err := ctrl.NewManager(own, ctrl.Options{
		LeaderElection:                      true,
		LeaderElectionResourceLockInterface: lock,
		LeaderElectionReleaseOnCancel:       true,
		LeaseDuration:                       &ld,
		RenewDeadline:                       &rd,
		RetryPeriod:                         &rp,
		Metrics:                             metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress:              "0",
	})
	if err != nil {
		return err
	}
	rec := reconciler{name: cfg.Name, clusters: clusters, lock: lock, rep: rep, log: log}
	if cfg.Unfenced {
		err = mgr.Add(unfenced{manager.RunnableFunc(rec.run)})
	} else {
		err = mgr.Add(manager.RunnableFunc(rec.run))
	}
	if err != nil {
		return err
	}
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		return leasemirror.Run(ctx, leasemirror.Config{
			Name: leaseName, Namespace: namespace, Identity: lock.Identity(), Clusters: clusters, Token: lock.Token,
			RenewPeriod: retryPeriod, LeaseDuration: leaseDuration, Logger: log,
		})
	})); err != nil {
		return err
	}

	// Commands from the test on stdin: fault injection, as the in-process
	// tests do with FaultHooks. stdin closing means the test is gone.
	ctx, cancel := context.WithCancel(ctrl.SetupSignalHandler())
	defer cancel()
	go func() {
		defer cancel()
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			var what, who, onoff string
			fmt.Sscan(sc.Text(), &what, &who, &onoff)
			on := onoff == "on"
			switch what {
			case "ingress":
				hooks.BlockIngress(on)
			case "from":
				hooks.BlockFrom(who, on)
			}
			log.Info("fault", "cmd", sc.Text())
		}
	}()

	// The node outlives the manager, so that the release on the way out
	// can hand leadership over at once.
	nodeCtx, stopNode := context.WithCancel(context.Background())
	nodeDone := make(chan error, 1)
	go func() { nodeDone <- elector.Run(nodeCtx) }()
	rep.emit("ready", 0)
	mgrErr := mgr.Start(ctx)
	stopNode()
	return errors.Join(mgrErr, <-nodeDone)
}

// unfenced is a runnable that does not need leader election.
type unfenced struct{ manager.RunnableFunc }

func (unfenced) NeedLeaderElection() bool { return false }

// reconciler keeps the demo ConfigMap in every cluster owned by the
// leader, writing its fencing token with each change. It writes blindly
// (a merge patch without a resourceVersion precondition, and no check of
// the token already stored): a real operator should fence, but here the
// objects' history must show what the lock alone guarantees.
type reconciler struct {
	name     string
	clusters map[string]kubernetes.Interface
	lock     *resourcelock.Lock
	rep      *reporter
	log      *slog.Logger
}

func (r reconciler) run(ctx context.Context) error {
	token, _ := r.lock.Token()
	r.rep.emit("leading", token)
	defer func() { r.rep.emit("stopped", token) }()
	names := make([]string, 0, len(r.clusters))
	for n := range r.clusters {
		names = append(names, n)
	}
	sort.Strings(names)
	t := time.NewTicker(writePeriod)
	defer t.Stop()
	for seq := 1; ; {
		for _, n := range names {
			if ctx.Err() != nil {
				return nil
			}
			if err := r.write(ctx, r.clusters[n], token, seq); err != nil && ctx.Err() == nil {
				r.log.Warn("write failed", "cluster", n, "err", err)
			}
			seq++
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (r reconciler) write(ctx context.Context, c kubernetes.Interface, token uint64, seq int) error {
	data := map[string]string{
		"writer": r.name,
		"token":  strconv.FormatUint(token, 10),
		"seq":    strconv.Itoa(seq),
		// When the write was sent, on the host's clock, which every
		// process of the test shares.
		"stamp": strconv.FormatInt(time.Now().UnixNano(), 10),
	}
	patch, _ := json.Marshal(map[string]any{"data": data})
	cms := c.CoreV1().ConfigMaps(namespace)
	_, err := cms.Patch(ctx, objName, types.MergePatchType, patch, metav1.PatchOptions{})
	if apierrors.IsNotFound(err) {
		_, err = cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: objName, Namespace: namespace}, Data: data}, metav1.CreateOptions{})
	}
	return err
}
