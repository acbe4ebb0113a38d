// Command bench measures the SandboxSet warm pool side by side with the
// warm pool people build by hand today, a plain ReplicaSet whose Pods are
// claimed by relabelling them out of its selector. It brings up its own
// local kwok cluster (test/local/cluster.sh), runs both systems through the
// same scenarios (scale-up, burst, sustained claims, template change), puts
// every time next to this cluster's floor (a raw loop against the API
// server), prints a table per scenario and writes every number as JSON.
//
// It is a benchmark, not a test: it fails only when it cannot measure,
// never on speed. Correctness (no double claim, no over-creation) is
// reported here and asserted in the e2e suite.
//
//	go run ./test/bench -quick     # a small run for development
//	make bench BENCH_FLAGS='-profile noqps'
//
// With -trace-replay it also replays claim arrival traces against a
// mean-sized, a peak-sized and an autoscaled pool (issue 21; tracereplay.go):
//
//	make bench-autoscale                            # about 11 minutes
//	go run ./test/bench -trace-quick                # about 4 minutes
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
)

const (
	profileDefault = "default" // the control plane components' own client QPS limits
	profileNoQPS   = "noqps"   // kwokctl --disable-qps-limits

	claimPicker = "picker" // agents share one watch of their pool (claim.Picker for a SandboxSet)
	claimList   = "list"   // every try lists the pool (claim.Client.Claim for a SandboxSet)

	watchPool      = "pool"      // -rss10k: a claim.Picker per pool, each a watch of its pool
	watchNamespace = "namespace" // -rss10k: claim.NamespacePickers, each a watch of every pool
)

// params are the run's knobs, recorded with its results.
type params struct {
	N                 int           `json:"n"`
	Agents            int           `json:"agents"`
	Rate              float64       `json:"sustainedRatePerSecond"`
	Duration          time.Duration `json:"sustainedDurationNanoseconds"`
	TemplateRate      float64       `json:"templateChangeRatePerSecond"`
	Repeat            int           `json:"repeat"`
	ReadyDelay        time.Duration `json:"readyDelayNanoseconds"`
	Nodes             int           `json:"nodes"`
	Profile           string        `json:"profile"`
	CreateParallelism int           `json:"createParallelism"`
	ClusterName       string        `json:"clusterName"`
	Scenarios         string        `json:"scenarios"`
	Claim             string        `json:"claim"`
	AgentsAs          string        `json:"agentsAs"`
	Systems           string        `json:"systems"`
	// FlowControl keeps config/flowcontrol's priority level for the
	// manager's Pod writes; without it they share the agents' level.
	FlowControl bool `json:"flowControl"`
	// ManagerMemoryLimitMiB runs the manager as in a container with this
	// memory limit (GOMEMLIMIT at 90% of it); 0 means no limit.
	ManagerMemoryLimitMiB int           `json:"managerMemoryLimitMiB"`
	Timeout               time.Duration `json:"timeoutNanoseconds"`
	WaitTimeout           time.Duration `json:"waitTimeoutNanoseconds"`
	ExpirySandboxes       int           `json:"expirySandboxes"`
	ExpirySpread          time.Duration `json:"expirySpreadNanoseconds"`
	RSS10k                bool          `json:"rss10k"`
	RSSTimeout            time.Duration `json:"rss10kTimeoutNanoseconds"`
	RSSPods               int           `json:"rss10kPods"`
	RSSPoolSize           int           `json:"rss10kPoolSize"`
	RSSClaimRate          float64       `json:"rss10kClaimRatePerSecond"`
	RSSPickers            int           `json:"rss10kPickers"`
	RSSWatch              string        `json:"rss10kWatch,omitempty"`
	Quick                 bool          `json:"quick"`
	Long                  bool          `json:"long"`
	Out                   string        `json:"-"`
	Report                string        `json:"-"`
	ReuseCluster          bool          `json:"reuseCluster"`
	KeepCluster           bool          `json:"-"`
	// The trace replay of pool autoscaling (tracereplay.go).
	TraceReplay         bool          `json:"traceReplay"`
	TraceQuick          bool          `json:"traceQuick"`
	Traces              string        `json:"traces"`
	TraceSeed           uint64        `json:"traceSeed"`
	TraceRefill         time.Duration `json:"traceRefillNanoseconds"`
	TraceHold           time.Duration `json:"traceHoldNanoseconds"`
	TraceMiss           string        `json:"traceMiss"`
	TraceReadyMax       time.Duration `json:"traceReadyMaxNanoseconds"`
	TraceScaleDownDelay time.Duration `json:"traceScaleDownDelayNanoseconds"`
	TraceWarmUp         bool          `json:"traceWarmUp"`
}

func parseFlags(args []string) (params, error) {
	var p params
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.IntVar(&p.N, "n", 100, "pool size N: Pods per pool, claims per burst, Pods per floor loop")
	fs.IntVar(&p.Agents, "agents", 100, "concurrent agents A in the burst, and concurrent patches in the floor")
	fs.Float64Var(&p.Rate, "rate", 50, "sustained scenario: claims per second, open loop")
	fs.DurationVar(&p.Duration, "duration", 20*time.Second, "sustained scenario: how long claims arrive")
	fs.Float64Var(&p.TemplateRate, "template-rate", 10, "template change scenario: claims per second during the rollout")
	fs.IntVar(&p.Repeat, "repeat", 3, "repetitions of every scenario; tables show the median and the range")
	fs.DurationVar(&p.ReadyDelay, "ready-delay", time.Second, "how long after binding a Pod turns Ready (kwok), like a container start")
	fs.IntVar(&p.Nodes, "nodes", 40, "simulated nodes")
	fs.StringVar(&p.Profile, "profile", profileDefault, "control plane profile: default (components' own client QPS limits) or noqps (kwokctl --disable-qps-limits)")
	fs.IntVar(&p.CreateParallelism, "create-parallelism", 64, "the floor's raw loop: creations in flight")
	fs.StringVar(&p.ClusterName, "cluster-name", "sandboxset-bench", "kwok cluster name")
	fs.StringVar(&p.Claim, "claim", claimPicker, "how agents pick a Pod, for both systems: picker (one watch of the pool shared by the agents; for the SandboxSet, claim.Picker) or list (a fresh list per try; for the SandboxSet, claim.Client.Claim)")
	fs.StringVar(&p.AgentsAs, "agents-as", agentsAsServiceAccount, "who agents claim as: serviceaccount (one holding config/rbac/agent_role.yaml, as in production, held to the admission policies) or admin (trusted: the policies skip it)")
	fs.BoolVar(&p.FlowControl, "flowcontrol", true, "keep config/flowcontrol, which gives the manager's Pod writes API server seats of their own; false removes it after bring-up, so refills and claims share one priority level")
	fs.IntVar(&p.ManagerMemoryLimitMiB, "manager-memory-limit-mib", 0, "run the manager as in a container with this memory limit: GOMEMLIMIT at 90% of it, as the manager sets from its cgroup; 0 means none")
	fs.StringVar(&p.Systems, "systems", sysSandboxSet+","+sysReplicaSet, "comma-separated systems to run (for development: the tables need both for ratios)")
	fs.StringVar(&p.Scenarios, "scenarios", "floor,scaleup,patch,burst,sustained,template,expiry", "comma-separated scenarios to run")
	fs.IntVar(&p.ExpirySandboxes, "expiry-sandboxes", 1000, "expiry scenario: claimed sandboxes waiting for their shutdown times")
	fs.DurationVar(&p.ExpirySpread, "expiry-spread", 30*time.Second, "expiry scenario: the shutdown times spread evenly over this")
	fs.DurationVar(&p.Timeout, "timeout", 30*time.Minute, "the whole run's deadline, teardown excluded")
	fs.DurationVar(&p.WaitTimeout, "wait-timeout", 5*time.Minute, "the deadline of every single wait")
	fs.BoolVar(&p.RSS10k, "rss10k", false, "also fill pools totalling 10,000 Pods and report the manager's memory (slow)")
	fs.IntVar(&p.RSSPods, "rss10k-pods", 10000, "-rss10k: how many pool Pods in all, in pools of at most 1,000")
	fs.IntVar(&p.RSSPoolSize, "rss10k-pool-size", 1000, "-rss10k: Pods per pool, e.g. 100 for 100 pools of 100, or 5000 with -rss10k-pods 5000 for one pool at the default ceiling")
	fs.Float64Var(&p.RSSClaimRate, "rss10k-claim-rate", 0, "-rss10k: once all are available, claims per second for -duration, each to a pool picked at random; 0 for none")
	fs.IntVar(&p.RSSPickers, "rss10k-pickers", 1, "-rss10k: watches the claims go through, as agent gateways hold them: claim.NamespacePickers, or with -rss10k-watch pool claim.Pickers spread evenly over the pools, at least one a pool. API Priority and Fairness makes every Pod write in a namespace wider for each ten watches of its Pods, so one pool and many compare fairly only through as many")
	fs.StringVar(&p.RSSWatch, "rss10k-watch", watchNamespace, "-rss10k: what each of the -rss10k-pickers watches: namespace (a claim.NamespacePicker of every pool, as a gateway serving many pools should hold) or pool (a claim.Picker of one pool)")
	fs.DurationVar(&p.RSSTimeout, "rss10k-timeout", 20*time.Minute, "-rss10k: how long the 10,000 Pods may take to be available")
	fs.BoolVar(&p.Quick, "quick", false, "development mode: N=20, A=20, 10 claims/s for 5 s, repeat 1")
	fs.BoolVar(&p.Long, "long", false, "long mode: N=1000")
	fs.StringVar(&p.Out, "out", "bench-results.json", "where to write the JSON results")
	fs.StringVar(&p.Report, "report", "bench-report.html", "where to write the HTML report with charts: a bare file name goes next to -out; empty for none")
	fs.BoolVar(&p.ReuseCluster, "reuse-cluster", false, "use the cluster left by -keep-cluster instead of bringing one up (its profile and ready delay are what they were)")
	fs.BoolVar(&p.KeepCluster, "keep-cluster", false, "leave the cluster up at the end")
	fs.BoolVar(&p.TraceReplay, "trace-replay", false, "replay claim arrival traces against a mean-sized, a peak-sized and an autoscaled pool (issue 21), on cluster "+traceClusterName+" with the manager on ports "+traceWebhookPort+"/"+traceMetricsPort+"/"+traceProbePort+"; alone unless -scenarios is given")
	fs.BoolVar(&p.TraceQuick, "trace-quick", false, "-trace-replay with short traces (about 4 minutes with the cluster's bring-up), for development")
	fs.StringVar(&p.Traces, "traces", strings.Join(traceNames, ","), "-trace-replay: comma-separated traces to replay")
	fs.Uint64Var(&p.TraceSeed, "trace-seed", 1, "-trace-replay: the seed of the traces' arrival times")
	fs.DurationVar(&p.TraceRefill, "trace-refill", 0, "-trace-replay: size the fixed pools for this refill time (mean and p90 alike) instead of the one measured on the cluster at the start; 0 to measure")
	fs.StringVar(&p.TraceMiss, "trace-miss", traceMissCold, "-trace-replay: what an agent does when its pool has no available sandbox: cold (creates one from the template, already claimed, and waits until it is Ready; its agents may also create Pods) or wait (waits for the pool to have one available)")
	fs.DurationVar(&p.TraceHold, "trace-hold", 2*time.Second, "-trace-replay: how long an agent holds a claimed sandbox before releasing it")
	fs.DurationVar(&p.TraceReadyMax, "trace-ready-max", 3*time.Second, "-trace-replay: Pods turn Ready uniformly between -ready-delay and this after binding (test/local/cluster.sh's default 1–3 s)")
	fs.BoolVar(&p.TraceWarmUp, "trace-warm-up", true, "-trace-replay: replay each trace once unmeasured (another draw of it, \"yesterday\") right before the measured replay, so that every pool, the autoscaled one with its demand history, starts the measured day as it would on any day but the first")
	fs.DurationVar(&p.TraceScaleDownDelay, "trace-scale-down-delay", 30*time.Second, "-trace-replay: the autoscaled pool's spec.autoscaling.scaleDownDelay, for compressed time")
	if err := fs.Parse(args); err != nil {
		return p, err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	// A mode sets what the user did not set explicitly.
	def := func(name string, apply func()) {
		if !set[name] {
			apply()
		}
	}
	if p.TraceQuick {
		p.TraceReplay = true
		def("trace-scale-down-delay", func() { p.TraceScaleDownDelay = 10 * time.Second })
	}
	if p.TraceReplay {
		// The trace replay alone, on a cluster of its own, unless asked.
		def("scenarios", func() { p.Scenarios = "none" })
		def("cluster-name", func() { p.ClusterName = traceClusterName })
	}
	switch {
	case p.Quick && p.Long:
		return p, errors.New("-quick and -long contradict each other")
	case p.Quick:
		def("n", func() { p.N = 20 })
		def("agents", func() { p.Agents = 20 })
		def("rate", func() { p.Rate = 10 })
		def("duration", func() { p.Duration = 5 * time.Second })
		def("repeat", func() { p.Repeat = 1 })
		def("wait-timeout", func() { p.WaitTimeout = 2 * time.Minute })
		def("timeout", func() { p.Timeout = 10 * time.Minute })
	case p.Long:
		def("n", func() { p.N = 1000 })
		def("wait-timeout", func() { p.WaitTimeout = 10 * time.Minute })
		def("timeout", func() { p.Timeout = 90 * time.Minute })
	}
	switch {
	case p.Profile != profileDefault && p.Profile != profileNoQPS:
		return p, fmt.Errorf("-profile %q: want %s or %s", p.Profile, profileDefault, profileNoQPS)
	case p.Claim != claimPicker && p.Claim != claimList:
		return p, fmt.Errorf("-claim %q: want %s or %s", p.Claim, claimPicker, claimList)
	case p.N < 1 || p.Agents < 1 || p.Repeat < 1 || p.CreateParallelism < 1:
		return p, errors.New("-n, -agents, -repeat and -create-parallelism must be at least 1")
	case p.Rate <= 0 || p.TemplateRate <= 0 || p.Duration <= 0:
		return p, errors.New("-rate, -template-rate and -duration must be positive")
	case slices.ContainsFunc(strings.Split(p.Systems, ","), func(s string) bool { return s != sysSandboxSet && s != sysReplicaSet }):
		return p, fmt.Errorf("-systems %q: want a comma-separated list of %s and %s", p.Systems, sysSandboxSet, sysReplicaSet)
	case p.ManagerMemoryLimitMiB < 0:
		return p, errors.New("-manager-memory-limit-mib must not be negative")
	case p.ReadyDelay < 0:
		return p, errors.New("-ready-delay must not be negative")
	case p.RSSWatch != watchPool && p.RSSWatch != watchNamespace:
		return p, fmt.Errorf("-rss10k-watch %q: want %s or %s", p.RSSWatch, watchPool, watchNamespace)
	case p.RSSPoolSize < 1 || p.RSSClaimRate < 0 || p.RSSPickers < 1:
		return p, errors.New("-rss10k-pool-size and -rss10k-pickers must be at least 1 and -rss10k-claim-rate not negative")
	case p.TraceMiss != traceMissCold && p.TraceMiss != traceMissWait:
		return p, fmt.Errorf("-trace-miss %q: want %s or %s", p.TraceMiss, traceMissCold, traceMissWait)
	case p.TraceHold < 0 || p.TraceScaleDownDelay < 0 || p.TraceRefill < 0:
		return p, errors.New("-trace-hold, -trace-scale-down-delay and -trace-refill must not be negative")
	case slices.ContainsFunc(strings.Split(p.Traces, ","), func(s string) bool { return !slices.Contains(traceNames, s) }):
		return p, fmt.Errorf("-traces %q: want a comma-separated list of %s", p.Traces, strings.Join(traceNames, ", "))
	}
	return p, nil
}

// spreadWatches says what the -rss10k claims go through. Runs recorded
// before -rss10k-watch went through claim.Pickers.
func (p params) spreadWatches() string {
	if p.RSSWatch == watchNamespace {
		return fmt.Sprintf("claim.NamespacePickers, each a watch of every pool (%d)", p.RSSPickers)
	}
	return fmt.Sprintf("claim.Pickers, each a watch of its pool (%d)", max(p.RSSPickers, (p.RSSPods+p.RSSPoolSize-1)/p.RSSPoolSize))
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

func main() {
	// The benchmark logs its own lines; controller-runtime's clients need a
	// logger set, or they complain at their first use.
	ctrllog.SetLogger(logr.Discard())
	p, err := parseFlags(os.Args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	if err := run(p); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// run brings up the cluster, measures, reports, and takes the cluster down
// whatever happens: on success, on error, on SIGINT/SIGTERM or timeout.
func run(p params) (err error) {
	repo, err := findRepo()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()

	res := &results{StartedAt: time.Now(), Command: os.Args, Params: p, Machine: describeMachine(p), Git: describeGit(repo)}
	cl := newCluster(repo, p)
	if p.TraceReplay {
		useTraceCluster(cl, p)
	}
	if !p.ReuseCluster {
		if !p.KeepCluster {
			defer func() {
				logf("taking the cluster down")
				if derr := cl.down(); derr != nil {
					err = errors.Join(err, derr)
				}
			}()
		}
		logf("bringing up cluster %s (%d nodes, profile %s, Ready %s after binding)", p.ClusterName, p.Nodes, p.Profile, p.ReadyDelay)
		if err := cl.up(ctx); err != nil {
			return err
		}
	}
	b, err := connect(ctx, cl, p, res)
	if err != nil {
		return err
	}
	measureErr := b.measureAll(ctx)
	if measureErr != nil {
		res.Errors = append(res.Errors, measureErr.Error())
	}
	res.FinishedAt = time.Now()
	res.summarize()
	res.printTables(os.Stdout)
	out, _ := filepath.Abs(p.Out)
	if err := res.writeJSON(out); err != nil {
		return errors.Join(measureErr, err)
	}
	logf("results written to %s", out)
	if report := reportPath(out, p.Report); report != "" {
		if err := res.writeReport(report); err != nil {
			return errors.Join(measureErr, err)
		}
		logf("report written to %s", report)
	}
	// Speed never fails a run; a double claim or an extra Pod does.
	return errors.Join(measureErr, res.correctness())
}

// findRepo walks up from the working directory to the module root, where
// test/local/cluster.sh is.
func findRepo() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("finding the repository: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "test", "local", "cluster.sh")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run from inside the repository: test/local/cluster.sh not found above the working directory")
		}
		dir = parent
	}
}

// connect builds the clients and both systems' pools.
func connect(ctx context.Context, cl *cluster, p params, res *results) (*bench, error) {
	kubeconfig, err := cl.kubeconfig(ctx)
	if err != nil {
		return nil, err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("loading %s: %w", kubeconfig, err)
	}
	// Agents are many processes in real life; one unthrottled client here,
	// so client-go's limiter never shapes the figures.
	cfg.QPS, cfg.Burst = 5000, 10000
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(agentsv1alpha1.AddToScheme(scheme))
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating a clientset: %w", err)
	}
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("creating a client: %w", err)
	}
	if !p.FlowControl {
		if err := removeFlowControl(ctx, cs); err != nil {
			return nil, err
		}
	}
	e := &env{cfg: cfg, cs: cs, c: c, p: p, repo: cl.repo}
	b := &bench{env: e, cl: cl, pids: cl.pids(), res: res}
	res.PIDs = b.pids
	if b.sbs, err = newSandboxSetSystem(ctx, e); err != nil {
		return nil, err
	}
	if b.rs, err = newReplicaSetSystem(ctx, e); err != nil {
		return nil, err
	}
	return b, nil
}

// measureAll runs the selected scenarios in an order that needs the least
// setup between them: the floor on an idle cluster first, scale-up from
// zero, then the scenarios that start from a full pool.
func (b *bench) measureAll(ctx context.Context) error {
	defer b.close()
	want := map[string]bool{}
	for _, s := range strings.Split(b.p.Scenarios, ",") {
		want[strings.TrimSpace(s)] = true
	}
	if want["floor"] {
		if err := b.measureFloor(ctx); err != nil {
			return err
		}
	}
	for _, sc := range b.scenarios() {
		if !want[sc.key] {
			continue
		}
		if err := b.runScenario(ctx, sc); err != nil {
			return fmt.Errorf("scenario %s: %w", sc.key, err)
		}
	}
	if want["expiry"] {
		logf("expiry: %d claimed sandboxes expiring over %s", b.p.ExpirySandboxes, b.p.ExpirySpread)
		b.res.Expiry = &runs{}
		m, err := b.expiry(ctx)
		if m != nil {
			b.res.Expiry.Runs = append(b.res.Expiry.Runs, m)
		}
		if err != nil {
			if ctx.Err() != nil {
				return err
			}
			b.res.Expiry.addError(err)
		}
	}
	if b.p.RSS10k {
		b.res.RSS10k = &runs{}
		for rep := range b.p.Repeat {
			if rep > 0 {
				if err := b.rss10kAgain(ctx); err != nil {
					b.res.RSS10k.addError(err)
					break
				}
			}
			logf("rss10k: run %d of %d: filling pools totalling %d Pods", rep+1, b.p.Repeat, b.p.RSSPods)
			m, err := b.rss10k(ctx)
			if m != nil {
				b.res.RSS10k.Runs = append(b.res.RSS10k.Runs, m)
			}
			if err != nil {
				b.res.RSS10k.addError(err)
				break
			}
		}
	}
	var traceErr error
	if b.p.TraceReplay {
		traceErr = b.traceReplay(ctx)
	}
	if b.p.KeepCluster || b.p.ReuseCluster {
		b.cleanup()
	}
	return errors.Join(traceErr, ctx.Err())
}

func (b *bench) measureFloor(ctx context.Context) error {
	if err := b.setupFloor(ctx); err != nil {
		return err
	}
	b.res.Floor = &runs{}
	for rep := range b.p.Repeat {
		logf("floor: run %d of %d", rep+1, b.p.Repeat)
		cost := startCost(b.pids)
		m, err := b.floor(ctx, rep)
		if m == nil {
			m = metrics{}
		}
		cost.stop(m)
		controllerCost(m, "") // no controller: the API server's cost alone
		b.res.Floor.Runs = append(b.res.Floor.Runs, m)
		if err != nil {
			if ctx.Err() != nil {
				return err
			}
			b.res.Floor.addError(fmt.Errorf("run %d: %w", rep+1, err))
		}
	}
	return nil
}

func (b *bench) close() {
	for _, s := range []system{b.sbs, b.rs} {
		if s != nil {
			s.close()
		}
	}
	if b.floorT != nil {
		b.floorT.close()
	}
}

// cleanup deletes the run's namespaces from a cluster that stays up, so
// the next run against it starts clean. It does not wait.
func (b *bench) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, ns := range []string{b.sbs.namespace(), b.rs.namespace(), b.floorNS, b.rssNS, b.expiryNS} {
		if ns == "" {
			continue
		}
		if err := b.cs.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil {
			logf("warning: deleting namespace %s: %v", ns, err)
		}
	}
}
