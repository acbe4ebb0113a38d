// Command manager runs the SandboxSet controller and the operator's
// admission webhooks.
package main

import (
	// Autoscaling schedules name IANA time zones; the image has no zoneinfo.
	_ "time/tzdata"

	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"github.com/go-logr/logr"
	"go.uber.org/zap/zapcore"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
	"github.com/sandboxset/warmpool/certs"
	"github.com/sandboxset/warmpool/controllers"
	"github.com/sandboxset/warmpool/webhooks"
)

type options struct {
	metricsAddr   string
	metricsSecure bool
	probeAddr     string
	pprofAddr     string
	leaderElect   bool
	leaseDuration time.Duration
	renewDeadline time.Duration
	retryPeriod   time.Duration
	leaseNS       string
	qps           float64
	burst         int
	controller    controllers.Options

	webhookPort       int
	webhookHost       string
	certDir           string
	selfSigned        bool
	managerUsername   string
	anyIdentity       bool
	admissionParams   string
	maxReplicas       int
	enableWebhooks    bool
	enableControllers bool
	blockedCIDRs      []string
	podSecurityLevel  string
}

func main() {
	o := options{blockedCIDRs: controllers.DefaultBlockedCIDRs}
	flag.StringVar(&o.metricsAddr, "metrics-bind-address", ":8080", "Address the Prometheus metrics endpoint binds to; 0 disables it.")
	flag.BoolVar(&o.metricsSecure, "metrics-secure", false, "Serve metrics over HTTPS (with a certificate made at start), only to callers the API server authenticates and authorizes for GET /metrics. Needs RBAC to create TokenReviews and SubjectAccessReviews (config/rbac/metrics_auth_role.yaml).")
	flag.StringVar(&o.probeAddr, "health-probe-bind-address", ":8081", "Address the health and readiness probes bind to.")
	flag.StringVar(&o.pprofAddr, "pprof-bind-address", "", "Address to serve Go's pprof profiles on, e.g. 127.0.0.1:6060; empty disables it.")
	flag.BoolVar(&o.leaderElect, "leader-elect", true, "Elect a leader, so that only one manager replica runs the controller at a time. Every replica serves webhooks.")
	flag.DurationVar(&o.leaseDuration, "leader-elect-lease-duration", 15*time.Second, "How long a leader's lease lasts without renewal: the longest a crashed leader leaves the pool unattended.")
	flag.DurationVar(&o.renewDeadline, "leader-elect-renew-deadline", 10*time.Second, "How long the leader keeps trying to renew before it gives up leading; less than the lease duration.")
	flag.DurationVar(&o.retryPeriod, "leader-elect-retry-period", 2*time.Second, "How often candidates try to take the lease.")
	flag.StringVar(&o.leaseNS, "leader-elect-namespace", "", "Namespace of the leader-election Lease; in a cluster, the manager's own. Required out of cluster.")
	flag.Float64Var(&o.qps, "kube-api-qps", 1000, "Client-side queries per second to the API server; high enough that a 1,000-Pod refill is not throttled.")
	flag.IntVar(&o.burst, "kube-api-burst", 2000, "Client-side burst of queries to the API server.")
	flag.IntVar(&o.controller.Workers, "sandboxset-workers", 8, "How many SandboxSets reconcile in parallel.")
	flag.IntVar(&o.controller.PodWriteParallelism, "pod-write-parallelism", 64, "How many Pod creations, deletions and label patches the controller has in flight at once, shared by all SandboxSets.")
	flag.DurationVar(&o.controller.ExpectationTTL, "expectation-ttl", 2*time.Minute, "How long a Pod creation or deletion may go unseen in the cache before the controller stops counting on it.")
	flag.DurationVar(&o.controller.StatusInterval, "status-interval", time.Second, "How long a change of a SandboxSet's status that claims and refills make (its counts, and Ready's flip while it refills) waits to be written, and the least time between two such writes; other changes are written at once. 0 writes every change.")
	flag.IntVar(&o.webhookPort, "webhook-port", 9443, "Port the admission webhooks are served on.")
	flag.StringVar(&o.webhookHost, "webhook-host", "", "Address the admission webhooks bind to; empty means all addresses.")
	flag.StringVar(&o.certDir, "webhook-cert-dir", "/tmp/k8s-webhook-server/serving-certs", "Directory holding the webhook serving certificate (tls.crt, tls.key), reloaded when it changes.")
	flag.BoolVar(&o.selfSigned, "webhook-self-signed", false, "For local runs: unless --webhook-cert-dir already holds a valid pair, generate a throwaway CA and serving certificate into it at start. In a cluster cert-manager issues them.")
	flag.StringVar(&o.managerUsername, "manager-username", "", "The identity the manager's own API requests carry, the only one allowed to create warm Pods and change their state. Empty asks the API server (SelfSubjectReview).")
	flag.BoolVar(&o.anyIdentity, "allow-non-serviceaccount-identity", false, "Run even if the manager's identity is not a ServiceAccount. The webhooks trust that identity, so in a cluster it must be one no person or agent uses; this is for local development.")
	flag.StringVar(&o.admissionParams, "admission-params", "sandboxset-system/sandboxset-admission-params", "namespace/name of the ConfigMap the pool-pods admission policy reads its trusted identities from (config/policies/params.yaml).")
	flag.IntVar(&o.maxReplicas, "max-replicas", 5000, "The largest spec.replicas a SandboxSet may ask for.")
	flag.BoolVar(&o.enableWebhooks, "enable-webhooks", true, "Serve the admission webhooks.")
	flag.BoolVar(&o.enableControllers, "enable-controllers", true, "Run the SandboxSet controller.")
	flag.StringVar(&o.podSecurityLevel, "pod-security-level", webhooks.DefaultPodSecurityLevel, "The least Pod Security Standards level (privileged, baseline or restricted) every SandboxSet template and sandbox is held to, whatever its namespace enforces; a namespace that enforces a stricter level gets that.")
	flag.Func("sandbox-blocked-cidrs", "Comma-separated CIDRs that sandboxes may not reach through a pool's NetworkPolicy, beside other Pods and the API server; replaces the default ("+
		strings.Join(controllers.DefaultBlockedCIDRs, ",")+"). Add your Pod, Service and node ranges if they are public addresses.", func(s string) error {
		o.blockedCIDRs = strings.Split(s, ",")
		return nil
	})
	zapOpts := zap.Options{TimeEncoder: zapcore.RFC3339NanoTimeEncoder}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()

	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	if err := run(ctrl.SetupSignalHandler(), o); err != nil {
		ctrl.Log.WithName("setup").Error(err, "Manager exited with an error")
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	log := ctrl.Log.WithName("setup")
	if err := o.validate(); err != nil {
		return err
	}
	var err error
	if o.controller.BlockedCIDRs, err = controllers.ParseCIDRs(o.blockedCIDRs); err != nil {
		return fmt.Errorf("--sandbox-blocked-cidrs: %w", err)
	}
	setMemoryLimit(log)
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(agentsv1alpha1.AddToScheme(scheme))

	cfg, err := restConfig(o)
	if err != nil {
		return err
	}

	if o.enableWebhooks {
		if err := prepareCerts(o); err != nil {
			return err
		}
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        scheme,
		Cache:                         controllers.CacheOptions(),
		Metrics:                       metricsOptions(o),
		HealthProbeBindAddress:        o.probeAddr,
		PprofBindAddress:              o.pprofAddr,
		LeaderElection:                o.leaderElect,
		LeaderElectionID:              "sandboxset-manager.agents.kruise.io",
		LeaderElectionNamespace:       o.leaseNS,
		LeaseDuration:                 &o.leaseDuration,
		RenewDeadline:                 &o.renewDeadline,
		RetryPeriod:                   &o.retryPeriod,
		LeaderElectionReleaseOnCancel: true,
		WebhookServer: webhook.NewServer(webhook.Options{
			Host:    o.webhookHost,
			Port:    o.webhookPort,
			CertDir: o.certDir,
			TLSOpts: []func(*tls.Config){func(c *tls.Config) { c.MinVersion = tls.VersionTLS13 }},
		}),
	})
	if err != nil {
		return fmt.Errorf("creating manager: %w", err)
	}

	if o.enableControllers {
		if err := controllers.SetupWithManager(ctx, mgr, o.controller); err != nil {
			return err
		}
	}
	if o.enableWebhooks {
		username := o.managerUsername
		if username == "" {
			if username, err = whoAmI(ctx, cfg); err != nil {
				return err
			}
		}
		if err := checkIdentity(username, o.anyIdentity); err != nil {
			return err
		}
		log.Info("Only this identity may create warm Pods and change their state", "username", username)
		params, _ := splitNamespacedName(o.admissionParams) // checked by validate
		if err := webhooks.SetupWithManager(mgr, webhooks.Options{
			MaxReplicas: int32(o.maxReplicas), ManagerUsername: username, AdmissionParams: params, PodSecurityLevel: o.podSecurityLevel,
		}); err != nil {
			return err
		}
	}

	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return fmt.Errorf("adding health check: %w", err)
	}
	ready := healthz.Ping
	if o.enableWebhooks {
		// Ready only once the webhook server answers TLS, so a rollout never
		// sends admission requests to a replica that cannot serve them.
		ready = mgr.GetWebhookServer().StartedChecker()
	}
	if err := mgr.AddReadyzCheck("readyz", ready); err != nil {
		return fmt.Errorf("adding readiness check: %w", err)
	}
	log.Info("Starting manager", "leaderElection", o.leaderElect, "qps", o.qps, "burst", o.burst,
		"workers", o.controller.Workers, "podWriteParallelism", o.controller.PodWriteParallelism,
		"webhooks", o.enableWebhooks, "maxReplicas", o.maxReplicas)
	return mgr.Start(ctx)
}

// metricsOptions serves metrics in plain HTTP for local runs, or behind the
// API server's authentication and authorization: the metrics name every
// SandboxSet and namespace, which not every Pod in the cluster should read.
func metricsOptions(o options) metricsserver.Options {
	opts := metricsserver.Options{BindAddress: o.metricsAddr}
	if o.metricsSecure {
		opts.SecureServing = true
		opts.FilterProvider = filters.WithAuthenticationAndAuthorization
		opts.TLSOpts = []func(*tls.Config){func(c *tls.Config) { c.MinVersion = tls.VersionTLS13 }}
	}
	return opts
}

// prepareCerts makes sure the webhook server will have a certificate: a
// fresh self-signed one for local runs, or the mounted one, checked now so
// that a missing Secret is a clear error at start and not a TLS failure at
// the first admission request.
func prepareCerts(o options) error {
	// A valid pair is kept, so a restarted manager still matches the
	// caBundle its webhook configurations were installed with.
	if o.selfSigned && certs.Check(o.certDir) != nil {
		host := o.webhookHost
		if host == "" {
			host = "127.0.0.1"
		}
		ips := []net.IP{}
		if ip := net.ParseIP(host); ip != nil {
			ips = append(ips, ip)
		}
		if err := certs.SelfSigned(o.certDir, []string{"localhost"}, ips, 24*time.Hour); err != nil {
			return fmt.Errorf("generating self-signed webhook certificate: %w", err)
		}
	}
	if err := certs.Check(o.certDir); err != nil {
		return fmt.Errorf("webhook serving certificate: %w", err)
	}
	return nil
}

// checkIdentity refuses to serve the webhooks under an identity that is not
// a ServiceAccount: they trust it to create warm Pods and move their state,
// so a person's or an agent's credentials must never match it.
func checkIdentity(username string, anyIdentity bool) error {
	if anyIdentity || strings.HasPrefix(username, serviceAccountPrefix) {
		return nil
	}
	return fmt.Errorf("the manager runs as %q, which is not a ServiceAccount (%s<namespace>:<name>); "+
		"the webhooks trust this identity to create warm Pods and change their state, so run the manager under its own ServiceAccount, "+
		"or pass --allow-non-serviceaccount-identity for local development", username, serviceAccountPrefix)
}

const serviceAccountPrefix = "system:serviceaccount:"

// splitNamespacedName parses namespace/name.
func splitNamespacedName(s string) (types.NamespacedName, error) {
	namespace, name, ok := strings.Cut(s, "/")
	if !ok || namespace == "" || name == "" {
		return types.NamespacedName{}, fmt.Errorf("%q is not namespace/name", s)
	}
	return types.NamespacedName{Namespace: namespace, Name: name}, nil
}

// restConfig is how the manager reaches the API server: the kubeconfig or
// in-cluster credentials, the client rate limits, and no gzip. The manager
// talks to its own cluster, where compressing every watch event and
// response spends CPU on both sides (4% of the manager's, 2% of
// kube-apiserver's, under sustained claims) to save bandwidth the cluster
// network has to spare.
func restConfig(o options) (*rest.Config, error) {
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return nil, fmt.Errorf("loading kubeconfig: %w", err)
	}
	cfg.QPS, cfg.Burst = float32(o.qps), o.burst
	cfg.DisableCompression = true
	return cfg, nil
}

// whoAmI asks the API server which user the manager's credentials map to.
func whoAmI(ctx context.Context, cfg *rest.Config) (string, error) {
	clientset, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return "", fmt.Errorf("creating clientset: %w", err)
	}
	review, err := clientset.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("asking the API server who the manager is (set --manager-username to skip): %w", err)
	}
	if review.Status.UserInfo.Username == "" {
		return "", errors.New("the API server returned no username for the manager; set --manager-username")
	}
	return review.Status.UserInfo.Username, nil
}

// defaultGCPercent is the manager's GOGC unless the environment sets one.
// Its heap is mostly the Pod cache, which lives as long as the pools do,
// and Go's default of 100 lets the heap grow to twice that before a
// collection: at 20,000 pool Pods that headroom was a third of the
// manager's memory. Collecting at half the live heap cost about a tenth
// more CPU per claim (docs/benchmark.md).
const defaultGCPercent = 50

// setMemoryLimit sets GOGC to defaultGCPercent unless the environment sets
// it, and gives the Go runtime a soft memory limit at 90% of the
// container's (AUTOMEMLIMIT changes the ratio; GOMEMLIMIT, if set, wins).
// Filling a large pool decodes Pods faster than the default GC pacing frees
// them, and without a limit the heap may double its live size before a
// collection, straight into the OOM killer.
func setMemoryLimit(log logr.Logger) {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(defaultGCPercent)
	}
	limit, err := memlimit.SetGoMemLimitWithOpts(memlimit.WithProvider(memlimit.FromCgroup))
	switch {
	case errors.Is(err, memlimit.ErrNoLimit):
	case err != nil:
		log.Info("Could not read the container's memory limit; Go's memory limit is unchanged", "error", err.Error())
	case limit > 0:
		log.Info("Set Go's soft memory limit from the container's", "bytes", limit)
	}
}

// validate refuses settings the controller cannot run with.
func (o options) validate() error {
	switch {
	case o.controller.Workers < 1:
		return fmt.Errorf("--sandboxset-workers must be at least 1, not %d", o.controller.Workers)
	case o.controller.PodWriteParallelism < 1:
		return fmt.Errorf("--pod-write-parallelism must be at least 1, not %d", o.controller.PodWriteParallelism)
	case o.controller.ExpectationTTL <= 0:
		return fmt.Errorf("--expectation-ttl must be positive, not %s", o.controller.ExpectationTTL)
	case o.controller.StatusInterval < 0:
		return fmt.Errorf("--status-interval must not be negative, not %s", o.controller.StatusInterval)
	case o.maxReplicas < 0:
		return fmt.Errorf("--max-replicas must not be negative, not %d", o.maxReplicas)
	}
	if _, err := splitNamespacedName(o.admissionParams); err != nil {
		return fmt.Errorf("--admission-params: %w", err)
	}
	return nil
}
