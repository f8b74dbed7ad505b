// Command controller-runtime is a minimal operator whose replicas, one per
// Kubernetes cluster, elect one leader across the clusters through
// raftelect instead of a Lease in one API server. The only change from a
// stock controller-runtime main is the resource lock; the rest is the
// raftelect node it runs beside the manager, and (optionally) the
// credentials the leader fetches to act in every cluster.
//
//	controller-runtime --raftelect-config /etc/raftelect/node.yaml \
//	    --api-server https://api.eu-west-1.example:6443
package main

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"os"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/raftelect/raftelect/config"
	"github.com/raftelect/raftelect/election"
	"github.com/raftelect/raftelect/k8s/clustercreds"
	"github.com/raftelect/raftelect/k8s/resourcelock"
	"github.com/raftelect/raftelect/storage"
)

func main() {
	var (
		cfgPath   = flag.String("raftelect-config", "/etc/raftelect/node.yaml", "raftelect node configuration (see examples/node.yaml)")
		apiServer = flag.String("api-server", "", "this cluster's API server URL as the other clusters reach it; empty: serve no credentials")
		tokenFile = flag.String("token-file", "/var/run/secrets/raftelect/token", "projected ServiceAccount token served to the leader")
		caFile    = flag.String("ca-file", "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt", "this cluster's API server CA")
	)
	flag.Parse()
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	if err := run(log, *cfgPath, *apiServer, *tokenFile, *caFile); err != nil {
		log.Error("exiting", "err", err)
		os.Exit(1)
	}
}

func run(log *slog.Logger, cfgPath, apiServer, tokenFile, caFile string) error {
	node, err := config.Load(cfgPath, config.LoadOptions{Env: os.LookupEnv})
	if err != nil {
		return err
	}
	ecfg := node.ElectionConfig()
	ecfg.Logger = log
	if node.DataDir != "" {
		st, err := storage.OpenBolt(node.DataDir, storage.BoltOptions{})
		if err != nil {
			return err
		}
		defer st.Close()
		ecfg.Storage = st
	}

	// Serve this cluster's kubeconfig to the leader, on the peer port.
	var creds *clustercreds.Server
	if apiServer != "" {
		creds = clustercreds.NewServer(ecfg.Peers, clustercreds.KubeconfigFetcher{
			Cluster: node.Name, Server: apiServer, CAFile: caFile, TokenFile: tokenFile, TokenTTL: time.Hour,
		}, clustercreds.ServerOptions{Logger: log})
		ecfg.RegisterServices = creds.Register
	}
	elector, err := election.New(ecfg)
	if err != nil {
		return err
	}
	if creds != nil {
		creds.Bind(elector)
	}

	// The same three durations go to the lock and to the manager.
	leaseDuration, renewDeadline, retryPeriod := 15*time.Second, 4*time.Second, time.Second
	lock, err := resourcelock.New(resourcelock.Config{
		Elector: elector, LeaseDuration: leaseDuration, RenewDeadline: renewDeadline, RetryPeriod: retryPeriod, Logger: log,
	})
	if err != nil {
		return err
	}
	mgr, err := ctrl.NewManager(ctrl.GetConfigOrDie(), ctrl.Options{
		LeaderElection:                      true,
		LeaderElectionResourceLockInterface: lock,
		LeaderElectionReleaseOnCancel:       true,
		LeaseDuration:                       &leaseDuration,
		RenewDeadline:                       &renewDeadline,
		RetryPeriod:                         &retryPeriod,
		Metrics:                             metricsserver.Options{BindAddress: ":8080"},
		HealthProbeBindAddress:              ":8081",
	})
	if err != nil {
		return err
	}

	clients, err := clustercreds.NewClient(clustercreds.ClientConfig{Peers: ecfg.Peers, TLS: ecfg.TLS, Elector: elector, Logger: log})
	if err != nil {
		return err
	}
	defer clients.Close()
	// Runnables need leader election unless they say otherwise: this one
	// runs on the leader only, and stops when leadership ends.
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		token, _ := lock.Token()
		log.Info("leading", "fencing_token", token)
		defer clients.Forget()
		if apiServer != "" {
			kubeconfigs, err := clients.GetAll(ctx)
			log.Info("credentials for the clusters", "got", len(kubeconfigs), "err", err)
			// clustercreds.RESTConfig(kubeconfigs["n2"]) is a client for n2's cluster.
		}
		// Reconcile here, passing the fencing token with external writes.
		<-ctx.Done()
		return nil
	})); err != nil {
		return err
	}

	// The raftelect node outlives the manager, so that releasing
	// leadership on the way out can hand it over at once.
	ctx := ctrl.SetupSignalHandler()
	nodeCtx, stopNode := context.WithCancel(context.Background())
	nodeDone := make(chan error, 1)
	go func() { nodeDone <- elector.Run(nodeCtx) }()
	mgrErr := mgr.Start(ctx)
	stopNode()
	return errors.Join(mgrErr, <-nodeDone)
}
