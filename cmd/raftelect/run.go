package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/raftelect/raftelect/config"
	"github.com/raftelect/raftelect/election"
	"github.com/raftelect/raftelect/eventlog"
	"github.com/raftelect/raftelect/metrics"
	"github.com/raftelect/raftelect/storage"
)

func init() { addCommand(newRunCmd) }

// exit ends the process; a variable so that a test could intercept it.
var exit = os.Exit

func newRunCmd() *cobra.Command {
	var cfgPath string
	cmd := &cobra.Command{
		Use:   "run --config node.yaml",
		Short: "Run one node",
		Long: `Run one raftelect node until SIGTERM or SIGINT.

On the first signal a leader ends its lease, hands leadership to an
up-to-date reachable peer and waits for it, then the node stops (exit 0). A
second signal exits at once (exit 1). Every config field can be overridden by
the flags below or by RAFTELECT_* environment variables
(flag > environment > file > default).

On http_address the node serves /metrics (Prometheus), /healthz (200 while
the process runs), /readyz (200 while this node knows a leader, else 503)
and, with pprof: true, /debug/pprof/.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			n, err := loadConfig(cmd.Flags(), cfgPath)
			if err != nil {
				return err
			}
			return runNode(n, cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "", "YAML node configuration (see examples/node.yaml); RAFTELECT_CONFIG")
	addOverrideFlags(cmd.Flags())
	return cmd
}

// addOverrideFlags adds one flag per overridable config field.
func addOverrideFlags(fs *pflag.FlagSet) {
	for _, ov := range config.Overrides {
		fs.String(ov.Flag, "", fmt.Sprintf("%s (%s; overrides %s)", ov.Usage, ov.Env, ov.Field))
		if ov.Bool {
			fs.Lookup(ov.Flag).NoOptDefVal = "true"
		}
	}
}

// loadConfig reads the config file (from --config or RAFTELECT_CONFIG) with
// the flags the user set and the environment on top. Errors are usage
// errors (exit code 2).
func loadConfig(fs *pflag.FlagSet, path string) (*config.Node, error) {
	if path == "" {
		path = os.Getenv("RAFTELECT_CONFIG")
	}
	flags := map[string]string{}
	for _, ov := range config.Overrides {
		if f := fs.Lookup(ov.Flag); f != nil && f.Changed {
			flags[ov.Flag] = f.Value.String()
		}
	}
	n, err := config.Load(path, config.LoadOptions{Env: os.LookupEnv, Flags: flags})
	if err != nil {
		var ce *config.Error
		if errors.As(err, &ce) {
			return nil, usageError(fmt.Errorf("invalid configuration:\n%w", err))
		}
		return nil, usageError(err)
	}
	return n, nil
}

// newLogger makes the slog logger the config asks for, writing to w.
func newLogger(w io.Writer, lc config.Log) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(lc.Level)) // validated by config
	opts := &slog.HandlerOptions{Level: level}
	if lc.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// node is a configured node and everything it owns: the parts the run and
// exec commands share.
type node struct {
	cfg      *config.Node
	log      *slog.Logger
	elector  *election.Elector
	metrics  *metrics.Metrics
	registry *prometheus.Registry
	store    storage.Store // nil: in memory, owned by the elector
	events   *eventlog.Writer
	httpLis  net.Listener
	http     *http.Server
}

// newNode opens the store and the event log, builds the elector and binds
// the HTTP listener (so a taken port fails now, not later). cb are extra
// leadership callbacks (exec uses them). Call close when done.
func newNode(n *config.Node, log *slog.Logger, cb election.Callbacks) (nd *node, err error) {
	built := &node{cfg: n, log: log, registry: prometheus.NewRegistry()}
	nd = built
	defer func() {
		if err != nil {
			built.close() // nd is nil on the error returns
		}
	}()
	ec := n.ElectionConfig()
	ec.Logger = log
	// Our own certificate first: material every peer would refuse is a
	// configuration error (exit 2), found before the store is opened.
	if err := ec.CheckCertificate(); err != nil {
		return nil, usageError(fmt.Errorf("TLS: %w", err))
	}

	if n.DataDir == "" {
		log.Warn("no data_dir: raft state is kept in memory; after a restart this node will not vote for 2 election timeouts (see docs/safety.md)")
	} else {
		b, err := storage.OpenBolt(n.DataDir, storage.BoltOptions{})
		if err != nil {
			return nil, failure(fmt.Errorf("open raft store: %w", err))
		}
		nd.store, ec.Storage = b, b
	}
	if n.EventLog != "" {
		if nd.events, err = eventlog.Create(n.EventLog); err != nil {
			return nil, failure(err)
		}
		ec.EventLog = nd.events
	}

	nd.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	nd.metrics = metrics.New(nd.registry)
	ec.Metrics = nd.metrics
	ec.Callbacks = nd.metrics.Callbacks(cb)

	if nd.elector, err = election.New(ec); err != nil {
		return nil, usageError(err) // config.Load validated; this is a backstop
	}
	nd.metrics.Observe(nd.elector.Status)
	var startTerm uint64
	if nd.store != nil {
		hs, _, err := nd.store.InitialState()
		if err != nil {
			return nil, failure(fmt.Errorf("read raft store: %w", err))
		}
		startTerm = hs.GetTerm()
	}
	nd.metrics.StartTerm(startTerm)

	if n.HTTPAddress != "" {
		if nd.httpLis, err = net.Listen("tcp", n.HTTPAddress); err != nil {
			return nil, failure(fmt.Errorf("http_address: %w", err))
		}
		nd.http = &http.Server{Handler: nd.handler(), ReadHeaderTimeout: 5 * time.Second}
	}
	return nd, nil
}

// handler serves metrics, health and (if enabled) pprof.
func (nd *node) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(nd.registry, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(nd.log.Handler(), slog.LevelWarn)}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		l := nd.elector.Leader()
		if l.Name == "" {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "not ready: no leader known (term %d)\n", l.Term)
			return
		}
		fmt.Fprintf(w, "ready: leader %s, term %d\n", l.Name, l.Term)
	})
	if nd.cfg.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// run serves HTTP and runs the elector until ctx ends and the node has
// stopped (after handing over leadership if it led).
func (nd *node) run(ctx context.Context) error {
	if nd.http != nil {
		go func() {
			if err := nd.http.Serve(nd.httpLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
				nd.log.Error("http server stopped", "err", err)
			}
		}()
	}
	err := nd.elector.Run(ctx)
	if errors.Is(err, election.ErrStoreMismatch) {
		// The data directory is not this node's: the operator must act,
		// like a bad configuration (exit 2), and a restart loop will not help.
		return usageError(fmt.Errorf("data_dir %s: %w", nd.cfg.DataDir, err))
	}
	if errors.Is(err, election.ErrRemoved) {
		// Removed from the cluster: restarting with this data directory
		// is refused again, so supervisors must not (exit 4; systemd:
		// RestartPreventExitStatus=4).
		return &exitError{code: exitRemoved, err: err}
	}
	if err != nil {
		// Our own certificate, key or CA cannot work (expired, another
		// CA, not our identity...): a configuration problem, exit 2, like
		// an invalid config file.
		if errors.Is(err, election.ErrCertificate) {
			return usageError(fmt.Errorf("TLS: %w", err))
		}
		return failure(err)
	}
	return nil
}

// close releases what newNode opened. Safe on a partly built node.
func (nd *node) close() {
	if nd.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = nd.http.Shutdown(ctx)
		cancel()
	} else if nd.httpLis != nil {
		nd.httpLis.Close()
	}
	if nd.store != nil {
		if err := nd.store.Close(); err != nil {
			nd.log.Error("close raft store", "err", err)
		}
	}
	if nd.events != nil {
		_ = nd.events.Close()
	}
}

// runNode is `raftelect run`: one node until a signal.
func runNode(n *config.Node, stderr io.Writer) error { return runNodeWith(n, stderr, nil) }

// leaderWork is work a node runs only while it holds the lease (exec's
// command).
type leaderWork interface {
	// run is registered with Elector.RunWhileLeader.
	run(ctx context.Context, lease election.Lease) error
	// stop ends the work for good and waits for it; called on the first
	// signal, before the node stops and hands leadership over.
	stop()
	// kill ends the work at once; called on a second signal, before exiting.
	kill()
}

// runNodeWith runs one node until a signal, with optional leader work.
func runNodeWith(n *config.Node, stderr io.Writer, work leaderWork) error {
	log := newLogger(stderr, n.Log)
	nd, err := newNode(n, log, election.Callbacks{})
	if err != nil {
		return err
	}
	defer nd.close()
	if work != nil {
		nd.elector.RunWhileLeader(work.run)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	go func() {
		first, ok := <-sigs
		if !ok {
			return
		}
		at := time.Now()
		log.Info("stopping; a leader hands over leadership first (signal again to exit at once)", "signal", first.String())
		second := laterSignal(sigs, first, at, log)
		if work != nil {
			// The work stops while this node still holds the lease, so no
			// other node's work can start before it has ended.
			stopped := make(chan struct{})
			go func() { work.stop(); close(stopped) }()
			select {
			case <-stopped:
			case s := <-second:
				secondSignal(stderr, s, work)
			}
		}
		cancel()
		if s, ok := <-second; ok {
			secondSignal(stderr, s, work)
		}
	}()

	if n.UnsafeSyncSend {
		log.Warn("unsafe_sync_send is on: sends are synchronous as in the reference system; a silent peer will cost this cluster its leader (chaos repro only)")
	}
	if w := evenVotersWarning(len(n.Peers)); w != "" {
		log.Warn(w)
	}
	log.Info("starting", "peers", len(n.Peers), "heartbeat_interval", n.HeartbeatInterval.D(),
		"election_timeout", n.ElectionTimeout.D(), "data_dir", n.DataDir, "http_address", n.HTTPAddress,
		"tls", !n.Insecure)
	if err := nd.run(ctx); err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}

// evenVotersWarning says why an even number of voters is a poor choice, or
// "" for an odd number. A majority of 2k nodes is k+1, so 2k tolerate k-1
// failures, as 2k-1 do: the extra node adds a machine that can fail and a
// vote to wait for, and a partition into two halves leaves neither side a
// majority.
func evenVotersWarning(n int) string {
	if n < 2 || n%2 == 1 {
		return ""
	}
	return fmt.Sprintf("%d voters: a majority is %d, so the cluster survives no more failed nodes (%d) than %d voters would, and an even split leaves no side a majority; use %d or %d nodes",
		n, n/2+1, n/2-1, n-1, n-1, n+1)
}

// duplicateSignalWindow: the same signal again this soon after the first is
// the same request delivered twice, not an operator insisting. GNU timeout
// (and other supervisors) signal the child and then its whole process
// group, so the child gets two SIGTERMs microseconds apart; a person
// pressing Ctrl-C twice is far slower than this.
const duplicateSignalWindow = 250 * time.Millisecond

// laterSignal returns a channel that yields the next signal from sigs that
// is not a duplicate of first (received at at); it is closed if sigs is.
func laterSignal(sigs <-chan os.Signal, first os.Signal, at time.Time, log *slog.Logger) <-chan os.Signal {
	out := make(chan os.Signal, 1)
	go func() {
		defer close(out)
		for s := range sigs {
			if s == first && time.Since(at) < duplicateSignalWindow {
				log.Info("same signal again at once (a supervisor signalling the process group too); still stopping cleanly", "signal", s.String())
				continue
			}
			out <- s
			return
		}
	}()
	return out
}

// secondSignal exits at once, killing any leader work first.
func secondSignal(stderr io.Writer, s os.Signal, work leaderWork) {
	if work != nil {
		work.kill()
	}
	fmt.Fprintf(stderr, "raftelect: second signal (%v): exiting at once without a clean stop\n", s)
	exit(exitFailure)
}
