package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"

	"github.com/sandboxset/warmpool/api/claim"
	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
)

// --- the floor -------------------------------------------------------------

const floorLabel = "bench-floor"

// setupFloor makes the namespace where the raw loop creates plain Pods:
// no pool label, so no webhook, and no controller.
func (b *bench) setupFloor(ctx context.Context) error {
	ns, err := createNamespace(ctx, b.cs, "bench-floor-")
	if err != nil {
		return err
	}
	b.floorNS = ns
	b.floorT, err = newTracker(ctx, b.cs, "floor", ns, floorLabel, func(pod *corev1.Pod) podClass {
		if agentsv1alpha1.IsPodReady(pod) {
			return classAvailable
		}
		return classCreating
	})
	return err
}

// floor measures what this cluster can do at best: N Pods created straight
// against the API server, createParallelism at a time, until all are Ready;
// then label patches on them, one at a time and A at once.
func (b *bench) floor(ctx context.Context, rep int) (metrics, error) {
	n, t := b.p.N, b.floorT
	pods := b.cs.CoreV1().Pods(b.floorNS)
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("floor-r%d-%d", rep, i)
	}
	t.setTarget(n)
	m := metrics{}

	start := time.Now()
	err := parallel(ctx, b.p.CreateParallelism, n, func(ctx context.Context, i int) error {
		return b.createFloorPod(ctx, names[i], false)
	})
	if err != nil {
		return m, err
	}
	created := time.Since(start)
	m["create_s"] = created.Seconds()
	m["create_per_s"] = float64(n) / created.Seconds()
	// N ÷ (N ÷ created) is the creation time itself: the floor a controller
	// that creates everything at once, at this cluster's create rate, reaches
	// if every Pod then turned Ready after exactly the ready delay.
	m["floor_formula_s"] = created.Seconds() + b.p.ReadyDelay.Seconds()
	if err := t.waitFor(ctx, b.p.WaitTimeout, fmt.Sprintf("%d Ready", n), func(c counts) bool { return c.available >= n }); err != nil {
		return m, err
	}
	m["ready_all_s"] = t.fullSince().Sub(start).Seconds()

	patch := b.floorPatch(false)
	serial := make([]time.Duration, n)
	for i, pod := range names {
		if serial[i], err = patch(ctx, pod, fmt.Sprintf("s%d", i)); err != nil {
			return m, err
		}
	}
	latencyMetrics(m, "patch_serial", serial)

	concurrent := make([]time.Duration, b.p.Agents)
	err = parallel(ctx, b.p.Agents, b.p.Agents, func(ctx context.Context, i int) error {
		var err error
		concurrent[i], err = patch(ctx, names[i%n], fmt.Sprintf("c%d", i))
		return err
	})
	if err != nil {
		return m, err
	}
	latencyMetrics(m, "patch_concurrent", concurrent)

	// The same writes with creations running beside them, as a pool's claims
	// run beside its refill: what claims cost on this machine at best, in any
	// warm pool that refills.
	loaded, err := b.patchesWhileCreating(ctx, rep, names, patch)
	if err != nil {
		return m, err
	}
	latencyMetrics(m, "patch_loaded", loaded)
	if err := b.ratedFloors(ctx, fmt.Sprintf("floor-r%d", rep), names, b.p.Rate, m, "patch_rate"); err != nil {
		return m, err
	}

	if err := pods.DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: floorLabel}); err != nil {
		return m, fmt.Errorf("deleting the floor's Pods: %w", err)
	}
	return m, t.waitFor(ctx, b.p.WaitTimeout, "the floor's Pods gone", func(c counts) bool { return c.total() == 0 })
}

// createFloorPod creates a floor Pod; with nop, through the webhook that
// does nothing.
func (b *bench) createFloorPod(ctx context.Context, name string, nop bool) error {
	labels := map[string]string{floorLabel: "true"}
	if nop {
		labels[nopWebhookLabel] = "true"
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec:       sandboxTemplate(),
	}
	if _, err := b.cs.CoreV1().Pods(b.floorNS).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating Pod %s/%s: %w", b.floorNS, name, err)
	}
	return nil
}

type patchFunc func(ctx context.Context, pod, value string) (time.Duration, error)

// floorPatch sets a label on a floor Pod and times it; with nop, the patch
// also labels the Pod for the webhook that does nothing, so the write goes
// through it.
func (b *bench) floorPatch(nop bool) patchFunc {
	pods := b.cs.CoreV1().Pods(b.floorNS)
	return func(ctx context.Context, pod, value string) (time.Duration, error) {
		body := fmt.Appendf(nil, `{"metadata":{"labels":{"bench-touch":%q}}}`, value)
		if nop {
			body = fmt.Appendf(nil, `{"metadata":{"labels":{"bench-touch":%q,%q:"true"}}}`, value, nopWebhookLabel)
		}
		start := time.Now()
		if _, err := pods.Patch(ctx, pod, types.MergePatchType, body, metav1.PatchOptions{}); err != nil {
			return 0, fmt.Errorf("patching Pod %s/%s: %w", b.floorNS, pod, err)
		}
		return time.Since(start), nil
	}
}

// patchesWhileCreating is the burst's raw counterpart: a label patch on each
// of the Pods, A at a time, while as many new Pods are created,
// createParallelism at a time.
func (b *bench) patchesWhileCreating(ctx context.Context, rep int, names []string, patch patchFunc) ([]time.Duration, error) {
	created := make(chan error, 1)
	go func() {
		created <- parallel(ctx, b.p.CreateParallelism, len(names), func(ctx context.Context, i int) error {
			return b.createFloorPod(ctx, fmt.Sprintf("floor-r%d-l%d", rep, i), false)
		})
	}()
	latencies := make([]time.Duration, len(names))
	err := parallel(ctx, b.p.Agents, len(names), func(ctx context.Context, i int) error {
		var err error
		latencies[i], err = patch(ctx, names[i], fmt.Sprintf("l%d", i))
		return err
	})
	return latencies, errors.Join(err, <-created)
}

// ratedFloors measures the sustained load's raw counterpart at rate for
// -duration twice, as <key>_* and <key>_nop_*: plain, and through a webhook
// that does nothing. The Pods it creates are named after prefix.
func (b *bench) ratedFloors(ctx context.Context, prefix string, names []string, rate float64, m metrics, key string) error {
	total := int(rate * b.p.Duration.Seconds())
	plain, err := b.meteredPatchesAtRate(ctx, prefix+"-s", names, false, rate, total, m, key)
	if err != nil {
		return err
	}
	latencyMetrics(m, key, plain)

	w, err := startNopWebhook(ctx, b.cs)
	if err != nil {
		return err
	}
	defer w.close()
	// The API server takes the new configuration from its own watch; the
	// first patch it sends to the webhook is the sign it has.
	patch := b.floorPatch(true)
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := patch(ctx, names[0], "nop-probe")
		return w.calls() > 0, err
	})
	if err != nil {
		return fmt.Errorf("waiting for the API server to call the no-op webhook: %w", err)
	}
	before := w.calls()
	viaNop, err := b.meteredPatchesAtRate(ctx, prefix+"-w", names, true, rate, total, m, key+"_nop")
	if err != nil {
		return err
	}
	// Every patch and every creation went through the webhook, or this is
	// not the floor it claims to be.
	if calls := w.calls() - before; calls < int64(2*total) {
		return fmt.Errorf("the no-op webhook answered %d reviews for %d patches and as many creations", calls, total)
	}
	latencyMetrics(m, key+"_nop", viaNop)
	return nil
}

// meteredPatchesAtRate is patchesAtRate that also sets what the load cost:
// <key>_busy_cores, the machine's cores busy meanwhile, and
// <key>_apiserver_cpu_ms_per_patch, kube-apiserver's CPU per patch (and
// the creation after it), to set beside the claims' own.
func (b *bench) meteredPatchesAtRate(ctx context.Context, prefix string, names []string, nop bool, rate float64, total int, m metrics, key string) ([]time.Duration, error) {
	machine, machineErr := readMachineCPU()
	cost := startCost(map[string]int{procAPIServer: b.pids[procAPIServer]})
	latencies, err := b.patchesAtRate(ctx, prefix, names, nop, rate, total)
	if err != nil {
		return nil, err
	}
	if after, err := readMachineCPU(); err == nil && machineErr == nil {
		m[key+"_busy_cores"], _ = after.cores(machine)
	}
	spent := metrics{}
	cost.stop(spent)
	if cpu, ok := spent["cpu_s."+procAPIServer]; ok {
		m[key+"_apiserver_cpu_ms_per_patch"] = 1000 * cpu / float64(total)
	}
	return latencies, nil
}

// patchesAtRate is the sustained load's raw counterpart: total label
// patches at rate per second, open loop, each followed by one Pod creation,
// as each claim is by its replacement; with nop, both through the webhook
// that does nothing.
func (b *bench) patchesAtRate(ctx context.Context, prefix string, names []string, nop bool, rate float64, total int) ([]time.Duration, error) {
	patch := b.floorPatch(nop)
	latencies, errs := make([]time.Duration, total), make([]error, total)
	paced(ctx, rate, total, nil, func(i int) {
		if latencies[i], errs[i] = patch(ctx, names[i%len(names)], fmt.Sprintf("r%d", i)); errs[i] == nil {
			errs[i] = b.createFloorPod(ctx, fmt.Sprintf("%s%d", prefix, i), nop)
		}
	})
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return latencies, errors.Join(errs...)
}

// paced fires f(i) for 0..total-1 at rate per second, open loop: each in
// its own goroutine at its scheduled time, whatever the earlier ones are
// doing. It stops firing when stop closes or ctx ends, waits for those
// fired, and returns when the last one was fired.
func paced(ctx context.Context, rate float64, total int, stop <-chan struct{}, f func(i int)) time.Time {
	interval := time.Duration(float64(time.Second) / rate)
	var wg sync.WaitGroup
	defer wg.Wait()
	timer := time.NewTimer(0)
	defer timer.Stop()
	start := time.Now()
	last := start
	for i := range total {
		timer.Reset(time.Until(start.Add(time.Duration(i) * interval)))
		select {
		case <-timer.C:
		case <-stop:
			return last
		case <-ctx.Done():
			return last
		}
		last = time.Now()
		wg.Go(func() { f(i) })
	}
	return last
}

// parallel runs f for 0..n-1, width at a time, started together, and
// returns the first error.
func parallel(ctx context.Context, width, n int, f func(context.Context, int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	jobs := make(chan int, n)
	for i := range n {
		jobs <- i
	}
	close(jobs)
	errs := make(chan error, width)
	var wg sync.WaitGroup
	for range min(width, n) {
		wg.Go(func() {
			for i := range jobs {
				if err := f(ctx, i); err != nil {
					errs <- err
					cancel()
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return errors.Join(func() []error {
		var all []error
		for err := range errs {
			all = append(all, err)
		}
		return all
	}()...)
}

// --- 10,000 pool Pods ------------------------------------------------------

// rss10k fills pools of -rss10k-pool-size totalling -rss10k-pods (10,000)
// Pods and reads the manager's memory once they are all available: its
// cache must not grow with them. With -rss10k-claim-rate it then claims
// from them, spread over the pools.
func (b *bench) rss10k(ctx context.Context) (metrics, error) {
	const podsPerNode = 110
	perPool, total := b.p.RSSPoolSize, b.p.RSSPods
	pools := (total + perPool - 1) / perPool
	// Room for these, the two benchmark pools and what they hold, and the
	// floor's Pods beside the spread claims, with slack.
	floorPods := b.p.Agents + 2*int(b.p.RSSClaimRate*b.p.Duration.Seconds())
	nodes := max(b.p.Nodes, (total+4*b.p.N+floorPods)/podsPerNode+10)
	if nodes > b.p.Nodes {
		logf("rss10k: scaling to %d nodes for room", nodes)
		if err := b.cl.scaleNodes(ctx, nodes); err != nil {
			return nil, err
		}
	}
	ns, err := createNamespace(ctx, b.cs, "bench-rss-")
	if err != nil {
		return nil, err
	}
	b.rssNS = ns
	t, err := newTracker(ctx, b.cs, "rss10k", ns, agentsv1alpha1.LabelSandboxSet, classifySandbox)
	if err != nil {
		return nil, err
	}
	defer t.close()
	t.setTarget(total)
	idle, idleErr := b.managerMemory(ctx)
	cost := startCost(b.pids)
	start := time.Now()
	for i := range pools {
		sbs := &agentsv1alpha1.SandboxSet{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("pool-%d", i)},
			Spec: agentsv1alpha1.SandboxSetSpec{
				Replicas: ptr.To(int32(min(perPool, total-i*perPool))),
				Template: corev1.PodTemplateSpec{Spec: sandboxTemplate()},
			},
		}
		if err := b.c.Create(ctx, sbs); err != nil {
			return nil, fmt.Errorf("creating SandboxSet %s/%s: %w", ns, sbs.Name, err)
		}
	}
	// The manager caches every Pod with the pool label, so the benchmark's
	// own pool and the sandboxes claimed from it count too.
	m := metrics{"pool_pods": float64(total), "other_cached_pods": float64(b.sbs.tracker().counts().total())}
	err = t.waitFor(ctx, b.p.RSSTimeout, fmt.Sprintf("%d available", total), func(c counts) bool { return c.available >= total })
	if err == nil {
		m["time_to_all_s"] = t.fullSince().Sub(start).Seconds()
	}
	m["available"] = float64(t.counts().available)
	cost.stop(m)
	controllerCost(m, procManager)
	if full, err := b.managerMemory(ctx); err == nil && idleErr == nil {
		// What each cached pool Pod costs the manager, heap and all.
		m["ctrl_rss_before_mib"], m["ctrl_heap_before_mib"] = idle.rssMiB, idle.heapMiB
		m["ctrl_heap_mib"] = full.heapMiB
		m["ctrl_rss_kib_per_pod"] = 1024 * (full.rssMiB - idle.rssMiB) / float64(total)
		m["ctrl_heap_kib_per_pod"] = 1024 * (full.heapMiB - idle.heapMiB) / float64(total)
	}
	if err != nil || b.p.RSSClaimRate <= 0 {
		return m, err
	}
	return m, b.spreadClaims(ctx, ns, pools, m)
}

// rss10kAgain readies the cluster for another -rss10k run: the last run's
// pools are deleted and gone, and the manager is a new process, so that
// its memory before the fill is a fresh manager's again.
func (b *bench) rss10kAgain(ctx context.Context) error {
	ns := b.rssNS
	logf("rss10k: deleting namespace %s and its Pods", ns)
	if err := b.cs.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil {
		return fmt.Errorf("deleting namespace %s: %w", ns, err)
	}
	err := wait.PollUntilContextTimeout(ctx, time.Second, b.p.RSSTimeout, true, func(ctx context.Context) (bool, error) {
		_, err := b.cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, err
	})
	if err != nil {
		return fmt.Errorf("waiting for namespace %s to be gone: %w", ns, err)
	}
	b.rssNS = ""
	if _, err := b.cl.script(ctx, "start-manager"); err != nil {
		return err
	}
	pid, err := b.cl.pid(procManager)
	if err != nil {
		return err
	}
	b.pids[procManager] = pid
	return nil
}

// managerMemory is the manager's resident memory and the part of its Go
// heap in use.
type managerMemory struct{ rssMiB, heapMiB float64 }

func (b *bench) managerMemory(ctx context.Context) (managerMemory, error) {
	proc, err := readProc(b.pids[procManager])
	if err != nil {
		return managerMemory{}, err
	}
	heap, err := managerGauge(ctx, b.cl.managerMetrics, "go_memstats_heap_inuse_bytes")
	if err != nil {
		return managerMemory{}, err
	}
	return managerMemory{rssMiB: float64(proc.RSSKiB) / 1024, heapMiB: heap / (1 << 20)}, nil
}

// spreadPickers starts the watches the spread claims go through, which stop
// when ctx ends, and returns how to claim from a pool through one of them, and
// how many watches there are.
func (b *bench) spreadPickers(ctx context.Context, claims *claim.Client, ns string, pools int) (
	func(ctx context.Context, pool, id string) (*claim.Sandbox, error), int, error) {
	opts := claim.ClaimOptions{MaxAttempts: maxAttempts}
	if b.p.RSSWatch == watchNamespace {
		pickers := make([]*claim.NamespacePicker, b.p.RSSPickers)
		for i := range pickers {
			var err error
			if pickers[i], err = claims.NewNamespacePicker(ctx, ns); err != nil {
				return nil, 0, fmt.Errorf("starting a claim picker on namespace %s: %w", ns, err)
			}
		}
		return func(ctx context.Context, pool, id string) (*claim.Sandbox, error) {
			return pickers[rand.IntN(len(pickers))].Claim(ctx, pool, id, opts)
		}, len(pickers), nil
	}
	// Each pool's Pickers; as many watches in all whatever the pools, since
	// each one makes every Pod write wider.
	pickers := map[string][]*claim.Picker{}
	watches := max(pools, b.p.RSSPickers)
	for i := range watches {
		pool := fmt.Sprintf("pool-%d", i%pools)
		picker, err := claims.NewPicker(ctx, ns, pool)
		if err != nil {
			return nil, 0, fmt.Errorf("starting a claim picker on %s/%s: %w", ns, pool, err)
		}
		pickers[pool] = append(pickers[pool], picker)
	}
	return func(ctx context.Context, pool, id string) (*claim.Sandbox, error) {
		ofPool := pickers[pool]
		return ofPool[rand.IntN(len(ofPool))].Claim(ctx, id, opts)
	}, watches, nil
}

// spreadClaims sends claims at -rss10k-claim-rate for -duration, open loop,
// each to a pool picked at random, through -rss10k-pickers watches as agent
// gateways would, as a ServiceAccount bound to the agent Role. It
// waits first for a quiet machine, so that the claims do not share it with
// the fill's tail, and reports how busy it was during them. It adds
// the claims' figures under spread_*, and the manager's CPU per claim won.
func (b *bench) spreadClaims(ctx context.Context, ns string, pools int, m metrics) error {
	if err := b.spreadFloor(ctx, ns, m); err != nil {
		return err
	}
	agent, _, err := agentClients(ctx, b.env, ns)
	if err != nil {
		return err
	}
	pickCtx, stopPickers := context.WithCancel(ctx)
	defer stopPickers()
	claimFrom, watches, err := b.spreadPickers(pickCtx, claim.New(agent), ns, pools)
	if err != nil {
		return err
	}
	m["spread_pickers"] = float64(watches)
	claimOne := func(ctx context.Context, id string) claimResult {
		start := time.Now()
		sbx, err := claimFrom(ctx, fmt.Sprintf("pool-%d", rand.IntN(pools)), id)
		return sandboxClaimResult(id, start, sbx, err)
	}
	quiet := metrics{}
	if err := b.startQuiet(ctx, quiet); err != nil {
		return err
	}
	m["spread_quiet_wait_s"], m["spread_busy_cores_before"] = quiet["quiet_wait_s"], quiet["busy_cores_before"]
	// The machine's CPU, and the benchmark's own share of it: its agents and
	// pickers run on the same cores as the cluster.
	machine, machineErr := readMachineCPU()
	benchCPU, benchErr := readProc(os.Getpid())
	cost, self := startCost(b.pids), startSelfMeter(ctx, b.cs, b.cl.managerMetrics, ns)
	results, _, err := b.openLoop(ctx, claimOne, b.p.RSSClaimRate, int(b.p.RSSClaimRate*b.p.Duration.Seconds()), nil, "spread")
	if after, err := readMachineCPU(); err == nil && machineErr == nil {
		m["spread_busy_cores"], m["spread_steal_cores"] = after.cores(machine)
		if benchAfter, err := readProc(os.Getpid()); err == nil && benchErr == nil {
			m["spread_bench_cores"] = (benchAfter.CPUSeconds - benchCPU.CPUSeconds) / after.at.Sub(machine.at).Seconds()
		}
	}
	cm, _ := claimMetrics(results, func(format string, args ...any) { logf("rss10k: "+format, args...) })
	load := metrics{"claims_ok": cm["claims_ok"]}
	cost.stop(load)
	controllerCost(load, procManager)
	// The writes, admission time and replacement stages per claim, as the
	// sustained scenario reports them.
	self.stop(ctx, load)
	for k, v := range load {
		m["spread_"+k] = v
	}
	for k, v := range cm {
		m["spread_"+k] = v
	}
	if won := cm["claims_ok"]; won > 0 {
		m["spread_ctrl_cpu_ms_per_claim"] = 1000 * load["ctrl_cpu_s"] / won
	}
	for _, q := range []string{"p50", "p99"} {
		claimed := m["spread_claim_"+q+"_ms"]
		m["spread_claim_"+q+"_per_floor"] = claimed / m["spread_floor_"+q+"_ms"]
		m["spread_claim_"+q+"_per_nop_floor"] = claimed / m["spread_floor_nop_"+q+"_ms"]
	}
	m["spread_ctrl_rss_mib"] = load["ctrl_rss_mib"]
	won := map[string]bool{}
	m["spread_double_claims"] = 0
	for _, r := range results {
		if r.pod == "" {
			continue
		}
		if won[r.pod] {
			m["spread_double_claims"]++
		}
		won[r.pod] = true
	}
	if n := m["spread_double_claims"]; n > 0 && err == nil {
		err = fmt.Errorf("%g Pods were won by two claims", n)
	}
	return err
}

// spreadFloor measures the spread claims' floor on the same cluster with
// the pools full, as spread_floor_*: label patches at the claim rate on
// plain Pods, each followed by a creation, then the same through a webhook
// that does nothing. It starts on a quiet machine, as the claims do, and
// leaves no Pod behind.
func (b *bench) spreadFloor(ctx context.Context, ns string, m metrics) error {
	if b.floorNS == "" {
		if err := b.setupFloor(ctx); err != nil {
			return err
		}
	}
	prefix := "floor-" + ns
	names := make([]string, b.p.Agents)
	for i := range names {
		names[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	err := parallel(ctx, b.p.CreateParallelism, len(names), func(ctx context.Context, i int) error {
		return b.createFloorPod(ctx, names[i], false)
	})
	if err == nil {
		err = b.startQuiet(ctx, metrics{})
	}
	if err == nil {
		logf("rss10k: the floor: label patches at %g/s, each followed by a creation, plain and through a webhook that does nothing", b.p.RSSClaimRate)
		err = b.ratedFloors(ctx, prefix, names, b.p.RSSClaimRate, m, "spread_floor")
	}
	pods := b.cs.CoreV1().Pods(b.floorNS)
	if delErr := pods.DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: floorLabel}); delErr != nil {
		return errors.Join(err, fmt.Errorf("deleting the floor's Pods: %w", delErr))
	}
	return errors.Join(err, b.floorT.waitFor(ctx, b.p.WaitTimeout, "the floor's Pods gone", func(c counts) bool { return c.total() == 0 }))
}
