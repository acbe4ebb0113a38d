package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sandboxset/warmpool/api/claim"
	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
)

// expiry claims -expiry-sandboxes sandboxes with shutdown times spread over
// -expiry-spread, measures the manager's CPU while they all wait and none
// is due, then how late after its shutdown time each one is deleted.
func (b *bench) expiry(ctx context.Context) (metrics, error) {
	n, spread := b.p.ExpirySandboxes, b.p.ExpirySpread
	ns, err := createNamespace(ctx, b.cs, "bench-expiry-")
	if err != nil {
		return nil, err
	}
	b.expiryNS = ns
	agentClient, _, err := agentClients(ctx, b.env, ns)
	if err != nil {
		return nil, err
	}
	seen, stopWatch, err := watchDeletions(ctx, b, ns)
	if err != nil {
		return nil, err
	}
	defer stopWatch()

	t, err := newTracker(ctx, b.cs, "expiry", ns, agentsv1alpha1.LabelSandboxSet, classifySandbox)
	if err != nil {
		return nil, err
	}
	defer t.close()
	sbs := &agentsv1alpha1.SandboxSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pool"},
		Spec:       agentsv1alpha1.SandboxSetSpec{Replicas: ptr.To(int32(n)), Template: corev1.PodTemplateSpec{Spec: sandboxTemplate()}},
	}
	if err := b.c.Create(ctx, sbs); err != nil {
		return nil, fmt.Errorf("creating SandboxSet %s/pool: %w", ns, err)
	}
	t.setTarget(n)
	if err := t.waitFor(ctx, b.p.WaitTimeout, fmt.Sprintf("%d available", n), func(c counts) bool { return c.available >= n }); err != nil {
		return nil, err
	}

	// Every sandbox is claimed before the first is due, and the pool is
	// emptied, so that the idle window sees only waiting expiries.
	const lead, idle = 40 * time.Second, 10 * time.Second
	first := time.Now().Add(lead)
	logf("expiry: claiming %d sandboxes, shutdown times from %s over %s", n, first.Format("15:04:05"), spread)
	shutdowns, err := claimWithShutdowns(ctx, claim.New(agentClient), b.p.Agents, ns, n, first, spread)
	if err != nil {
		return nil, err
	}
	if err := b.c.Patch(ctx, sbs, client.RawPatch(types.MergePatchType, []byte(`{"spec":{"replicas":0}}`))); err != nil {
		return nil, fmt.Errorf("emptying the pool: %w", err)
	}
	if err := t.waitFor(ctx, b.p.WaitTimeout, "no warm Pods", func(c counts) bool { return c.available+c.creating == 0 }); err != nil {
		return nil, err
	}
	// The idle window ends a second before the first expiry is due.
	wait := time.Until(first.Add(-idle - time.Second))
	if wait < 0 {
		return nil, fmt.Errorf("claiming and emptying the pool ran into the idle window by %s", -wait)
	}
	time.Sleep(wait)
	m := metrics{"sandboxes": float64(n), "spread_s": spread.Seconds()}
	cost := startCost(b.pids)
	time.Sleep(idle)
	cost.stop(m)
	m["idle_manager_cpu_per_s"] = m["cpu_s."+procManager] / idle.Seconds()
	m["idle_apiserver_cpu_per_s"] = m["cpu_s."+procAPIServer] / idle.Seconds()
	delete(m, "cpu_s."+procManager)
	delete(m, "cpu_s."+procAPIServer)

	last := first.Add(spread)
	logf("expiry: waiting for the %d expiries, the last due at %s", n, last.Format("15:04:05"))
	deadline := time.After(time.Until(last) + b.p.WaitTimeout)
	var lateness []time.Duration
	for name, at := range shutdowns {
		select {
		case <-ctx.Done():
			return m, ctx.Err()
		case <-deadline:
			return m, fmt.Errorf("%d of %d sandboxes were not deleted in time", n-len(lateness), n)
		case <-seen.wait(name):
			lateness = append(lateness, seen.at(name).Sub(at))
		}
	}
	latencyMetrics(m, "lateness", lateness)
	early := 0
	for _, l := range lateness {
		if l < 0 {
			early++
		}
	}
	m["early"] = float64(early)
	return m, nil
}

// claimWithShutdowns claims n sandboxes with agents claiming at once, each
// with a TTL that puts its shutdown time at first plus its share of spread,
// and returns each sandbox's shutdown time as the claim set it.
func claimWithShutdowns(ctx context.Context, c *claim.Client, agents int, ns string, n int, first time.Time, spread time.Duration) (map[string]time.Time, error) {
	picker, err := c.NewPicker(ctx, ns, "pool")
	if err != nil {
		return nil, err
	}
	defer picker.Stop()
	var (
		mu        sync.Mutex
		shutdowns = map[string]time.Time{}
		firstErr  error
		wg        sync.WaitGroup
		next      = make(chan int)
	)
	for range agents {
		wg.Go(func() {
			for i := range next {
				at := first.Add(spread * time.Duration(i) / time.Duration(n))
				sbx, err := picker.Claim(ctx, fmt.Sprintf("agent-%d", i), claim.ClaimOptions{TTL: time.Until(at), MaxAttempts: 20})
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = fmt.Errorf("claim %d: %w", i, err)
				} else if err == nil {
					shutdowns[sbx.Name] = sbx.ShutdownTime
				}
				mu.Unlock()
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return shutdowns, firstErr
}

// deletions records when each Pod of a namespace was first seen deleted:
// marked for deletion, or gone.
type deletions struct {
	mu   sync.Mutex
	seen map[string]time.Time
	done map[string]chan struct{}
}

func (d *deletions) channel(name string) chan struct{} {
	if d.done[name] == nil {
		d.done[name] = make(chan struct{})
	}
	return d.done[name]
}

func (d *deletions) record(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.seen[name]; !ok {
		d.seen[name] = time.Now()
		close(d.channel(name))
	}
}

func (d *deletions) wait(name string) <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.channel(name)
}

func (d *deletions) at(name string) time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.seen[name]
}

func watchDeletions(ctx context.Context, b *bench, ns string) (*deletions, func(), error) {
	d := &deletions{seen: map[string]time.Time{}, done: map[string]chan struct{}{}}
	factory := informers.NewSharedInformerFactoryWithOptions(b.cs, 0, informers.WithNamespace(ns))
	inf := factory.Core().V1().Pods().Informer()
	_, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		UpdateFunc: func(_, obj any) {
			if pod, ok := obj.(*corev1.Pod); ok && pod.DeletionTimestamp != nil {
				d.record(pod.Name)
			}
		},
		DeleteFunc: func(obj any) {
			if pod, ok := deletedPod(obj); ok {
				d.record(pod.Name)
			}
		},
	})
	if err != nil {
		return nil, nil, err
	}
	stop := make(chan struct{})
	factory.Start(stop)
	if !toolscache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		close(stop)
		return nil, nil, fmt.Errorf("watching the Pods of %s did not sync", ns)
	}
	return d, func() { close(stop) }, nil
}
