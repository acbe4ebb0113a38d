// Command manager runs the SandboxSet controller.
package main

import (
	"flag"
	"os"
	"time"

	"go.uber.org/zap/zapcore"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
	"github.com/sandboxset/warmpool/controllers"
)

func main() {
	var (
		metricsAddr    string
		probeAddr      string
		leaderElect    bool
		leaseDuration  time.Duration
		qps            float64
		burst          int
		controllerOpts controllers.Options
	)
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8080", "Address the Prometheus metrics endpoint binds to; 0 disables it.")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "Address the health and readiness probes bind to.")
	flag.BoolVar(&leaderElect, "leader-elect", true, "Elect a leader, so that only one manager replica acts at a time.")
	flag.DurationVar(&leaseDuration, "leader-elect-lease-duration", 15*time.Second, "How long a leader's lease lasts without renewal.")
	flag.Float64Var(&qps, "kube-api-qps", 1000, "Client-side queries per second to the API server; high enough that a 1,000-Pod refill is not throttled.")
	flag.IntVar(&burst, "kube-api-burst", 2000, "Client-side burst of queries to the API server.")
	flag.IntVar(&controllerOpts.Workers, "sandboxset-workers", 8, "How many SandboxSets reconcile in parallel.")
	flag.IntVar(&controllerOpts.PodWriteParallelism, "pod-write-parallelism", 64, "How many Pod creations, deletions and label patches one SandboxSet has in flight at once.")
	flag.DurationVar(&controllerOpts.ExpectationTTL, "expectation-ttl", 2*time.Minute, "How long a Pod creation or deletion may go unseen in the cache before the controller stops counting on it.")
	zapOpts := zap.Options{TimeEncoder: zapcore.RFC3339NanoTimeEncoder}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()

	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	log := ctrl.Log.WithName("setup")
	if err := run(metricsAddr, probeAddr, leaderElect, leaseDuration, qps, burst, controllerOpts); err != nil {
		log.Error(err, "Manager exited with an error")
		os.Exit(1)
	}
}

func run(metricsAddr, probeAddr string, leaderElect bool, leaseDuration time.Duration, qps float64, burst int, opts controllers.Options) error {
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(agentsv1alpha1.AddToScheme(scheme))

	cfg, err := ctrl.GetConfig()
	if err != nil {
		return err
	}
	cfg.QPS, cfg.Burst = float32(qps), burst

	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        scheme,
		Cache:                         controllers.CacheOptions(),
		Metrics:                       metricsserver.Options{BindAddress: metricsAddr},
		HealthProbeBindAddress:        probeAddr,
		LeaderElection:                leaderElect,
		LeaderElectionID:              "sandboxset-manager.agents.kruise.io",
		LeaseDuration:                 &leaseDuration,
		LeaderElectionReleaseOnCancel: true,
	})
	if err != nil {
		return err
	}
	ctx := ctrl.SetupSignalHandler()
	reconciler := &controllers.SandboxSetReconciler{
		Client:   mgr.GetClient(),
		Recorder: mgr.GetEventRecorder("sandboxset-controller"),
		Options:  opts,
	}
	if err := reconciler.SetupWithManager(ctx, mgr); err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return err
	}
	ctrl.Log.WithName("setup").Info("Starting manager", "leaderElection", leaderElect, "qps", qps, "burst", burst,
		"workers", opts.Workers, "podWriteParallelism", opts.PodWriteParallelism)
	return mgr.Start(ctx)
}
