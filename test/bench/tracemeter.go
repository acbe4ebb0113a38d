package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	toolscache "k8s.io/client-go/tools/cache"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
)

// sandboxSetResource is the SandboxSets' resource, for the dynamic client:
// the meter reads spec and status as stored, including fields this build's
// Go types may not have yet (spec.autoscaling, status.autoscaling).
var sandboxSetResource = agentsv1alpha1.GroupVersion.WithResource("sandboxsets")

// poolMeter follows every pool of one namespace through two watches, of
// their Pods and of their SandboxSets, and keeps each pool's size (its
// unclaimed Pods: creating plus available) over time, for Pod-seconds and
// charts. It also checks that no Pod ever changes holder.
type poolMeter struct {
	ns   string
	stop chan struct{}

	mu      sync.Mutex
	pods    map[string]*meteredPod // by name; the informer never reuses one
	pools   map[string]*meteredPool
	doubles map[string][]string // by pool: Pods seen held by one agent, then another
	changed chan struct{}
	// readyWait holds a signal per Pod someone waits to see Ready.
	readyWait map[string]*readySignal
}

// readySignal's channel is closed when its Pod is first seen Ready, at at.
type readySignal struct {
	ch chan struct{}
	at time.Time
}

type meteredPod struct {
	pool      string
	class     podClass
	firstSeen time.Time
	boundAt   time.Time // when first seen on a node; zero until then
	readyAt   time.Time // when first seen Ready; zero until then
	holder    string
}

// meteredPool is one pool as the watches showed it.
type meteredPool struct {
	c counts
	// claimedEver counts the Pods ever seen claimed.
	claimedEver int
	// size is the pool size (creating + available) at every change.
	size []availPoint
	// replicas is spec.replicas at every change; desired the autoscaler's
	// status.autoscaling.desiredReplicas, if the operator writes it.
	replicas, desired []availPoint
	// starts are the Pods that came in creating: when each was first seen
	// and how long until it was available, in the order they turned so.
	starts []podStart
}

// podStart is how long a new Pod took from first seen to bound to a
// node (the scheduler), to Ready (kwok's simulated start) and to available
// (the manager's relabel).
type podStart struct {
	seen                    time.Time
	bound, ready, available time.Duration
}

// startPoolMeter watches the Pods and SandboxSets of ns and returns once
// both watches have listed what exists.
func startPoolMeter(ctx context.Context, cs kubernetes.Interface, dyn dynamic.Interface, ns string) (*poolMeter, error) {
	m := &poolMeter{ns: ns, stop: make(chan struct{}), pods: map[string]*meteredPod{},
		pools: map[string]*meteredPool{}, doubles: map[string][]string{}, changed: make(chan struct{}), readyWait: map[string]*readySignal{}}
	factory := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(ns),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = agentsv1alpha1.LabelSandboxSet }))
	podInf := factory.Core().V1().Pods().Informer()
	if _, err := podInf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    m.setPod,
		UpdateFunc: func(_, obj any) { m.setPod(obj) },
		DeleteFunc: m.removePod,
	}); err != nil {
		return nil, fmt.Errorf("watching the pool Pods of %s: %w", ns, err)
	}
	sbsInf := toolscache.NewSharedIndexInformer(&toolscache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			return dyn.Resource(sandboxSetResource).Namespace(ns).List(ctx, opts)
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			return dyn.Resource(sandboxSetResource).Namespace(ns).Watch(ctx, opts)
		},
	}, &unstructured.Unstructured{}, 0, toolscache.Indexers{})
	if _, err := sbsInf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    m.setSandboxSet,
		UpdateFunc: func(_, obj any) { m.setSandboxSet(obj) },
	}); err != nil {
		return nil, fmt.Errorf("watching the SandboxSets of %s: %w", ns, err)
	}
	factory.Start(m.stop)
	go sbsInf.Run(m.stop)
	syncCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if !toolscache.WaitForCacheSync(syncCtx.Done(), podInf.HasSynced, sbsInf.HasSynced) {
		close(m.stop)
		return nil, fmt.Errorf("watching the pools of %s: the informers did not sync within a minute", ns)
	}
	return m, nil
}

func (m *poolMeter) close() { close(m.stop) }

// classifyPoolPod is where a pool's Pod stands: the state label, which is
// what agents claim by, and the holder label, which takes it out.
func classifyPoolPod(pod *corev1.Pod) podClass {
	switch {
	case pod.DeletionTimestamp != nil:
		return classTerminating
	case agentsv1alpha1.IsClaimed(pod):
		return classClaimed
	case pod.Labels[agentsv1alpha1.LabelState] == string(agentsv1alpha1.StateAvailable):
		return classAvailable
	}
	return classCreating
}

// pool returns the pool's record, creating it. The caller holds mu.
func (m *poolMeter) pool(name string) *meteredPool {
	p, ok := m.pools[name]
	if !ok {
		p = &meteredPool{}
		m.pools[name] = p
	}
	return p
}

func (m *poolMeter) setPod(obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	now := time.Now()
	class := classifyPoolPod(pod)
	holder := pod.Labels[agentsv1alpha1.LabelClaimedBy]
	m.mu.Lock()
	defer m.mu.Unlock()
	mp, seen := m.pods[pod.Name]
	if !seen {
		mp = &meteredPod{pool: pod.Labels[agentsv1alpha1.LabelSandboxSet], class: -1, firstSeen: now}
		m.pods[pod.Name] = mp
	}
	if mp.boundAt.IsZero() && pod.Spec.NodeName != "" {
		mp.boundAt = now
	}
	if mp.readyAt.IsZero() && agentsv1alpha1.IsPodReady(pod) {
		mp.readyAt = now
		if w, ok := m.readyWait[pod.Name]; ok {
			w.at = now
			close(w.ch)
			delete(m.readyWait, pod.Name)
		}
	}
	if holder != "" {
		if mp.holder != "" && mp.holder != holder {
			m.doubles[mp.pool] = append(m.doubles[mp.pool], fmt.Sprintf("Pod %s/%s held by %s, then by %s", m.ns, pod.Name, mp.holder, holder))
		}
		mp.holder = holder
	}
	if class == mp.class {
		return
	}
	p := m.pool(mp.pool)
	if mp.class == classCreating && class == classAvailable {
		p.starts = append(p.starts, podStart{seen: mp.firstSeen, available: now.Sub(mp.firstSeen),
			bound: mp.boundAt.Sub(mp.firstSeen), ready: mp.readyAt.Sub(mp.firstSeen)})
	}
	if class == classClaimed {
		p.claimedEver++
	}
	p.c = p.c.add(mp.class, -1) // nothing for a Pod first seen
	mp.class = class
	p.c = p.c.add(class, +1)
	m.changedAt(p, now)
}

func (m *poolMeter) removePod(obj any) {
	pod, ok := deletedPod(obj)
	if !ok {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	mp, ok := m.pods[pod.Name]
	if !ok {
		return
	}
	delete(m.pods, pod.Name)
	p := m.pool(mp.pool)
	p.c = p.c.add(mp.class, -1)
	m.changedAt(p, time.Now())
}

// add moves the count of class by delta.
func (c counts) add(class podClass, delta int) counts {
	switch class {
	case classAvailable:
		c.available += delta
	case classCreating:
		c.creating += delta
	case classClaimed:
		c.claimed += delta
	case classTerminating:
		c.terminating += delta
	}
	return c
}

// changedAt records the pool's size and wakes the waiters. The caller
// holds mu.
func (m *poolMeter) changedAt(p *meteredPool, now time.Time) {
	p.size = appendStep(p.size, now, p.c.pool())
	close(m.changed)
	m.changed = make(chan struct{})
}

// appendStep adds a point to a step function if its value changed.
func appendStep(h []availPoint, at time.Time, v int) []availPoint {
	if n := len(h); n > 0 && h[n-1].available == v {
		return h
	}
	return append(h, availPoint{at: at, available: v})
}

func (m *poolMeter) setSandboxSet(obj any) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return
	}
	now := time.Now()
	replicas, hasReplicas, _ := unstructured.NestedInt64(u.Object, "spec", "replicas")
	desired, hasDesired, _ := unstructured.NestedInt64(u.Object, "status", "autoscaling", "desiredReplicas")
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.pool(u.GetName())
	if hasReplicas {
		p.replicas = appendStep(p.replicas, now, int(replicas))
	}
	if hasDesired {
		p.desired = appendStep(p.desired, now, int(desired))
	}
	close(m.changed)
	m.changed = make(chan struct{})
}

// poolView is a pool's counts, the Pods ever claimed from it, and its
// spec.replicas (-1 until seen).
type poolView struct {
	counts
	claimedEver int
	replicas    int
}

func (m *poolMeter) view(pool string) poolView {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.viewLocked(pool)
}

func (m *poolMeter) viewLocked(pool string) poolView {
	v := poolView{replicas: -1}
	if p, ok := m.pools[pool]; ok {
		v.counts, v.claimedEver = p.c, p.claimedEver
		if n := len(p.replicas); n > 0 {
			v.replicas = p.replicas[n-1].available
		}
	}
	return v
}

// waitFor blocks until cond holds for the pools' views, woken by every
// change either watch sees, or fails after timeout with the views it last
// saw.
func (m *poolMeter) waitFor(ctx context.Context, timeout time.Duration, what string, pools []string, cond func(map[string]poolView) bool) error {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		m.mu.Lock()
		views := map[string]poolView{}
		for _, p := range pools {
			views[p] = m.viewLocked(p)
		}
		ch := m.changed
		m.mu.Unlock()
		if cond(views) {
			return nil
		}
		select {
		case <-ch:
		case <-timer.C:
			return fmt.Errorf("waiting for %s in %s: timed out after %s (%s)", what, m.ns, timeout, describeViews(pools, views))
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s in %s: %w (%s)", what, m.ns, ctx.Err(), describeViews(pools, views))
		}
	}
}

func describeViews(pools []string, views map[string]poolView) string {
	s := ""
	for i, p := range pools {
		if i > 0 {
			s += "; "
		}
		s += fmt.Sprintf("%s: replicas %d, %s", p, views[p].replicas, views[p].counts)
	}
	return s
}

// waitReady blocks until the watch shows the Pod Ready, and returns when
// it first did.
func (m *poolMeter) waitReady(ctx context.Context, name string, timeout time.Duration) (time.Time, error) {
	m.mu.Lock()
	if mp, ok := m.pods[name]; ok && !mp.readyAt.IsZero() {
		m.mu.Unlock()
		return mp.readyAt, nil
	}
	w, ok := m.readyWait[name]
	if !ok {
		w = &readySignal{ch: make(chan struct{})}
		m.readyWait[name] = w
	}
	m.mu.Unlock()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-w.ch:
		return w.at, nil // written before the close
	case <-timer.C:
		return time.Time{}, fmt.Errorf("waiting for sandbox %s/%s to be Ready: timed out after %s", m.ns, name, timeout)
	case <-ctx.Done():
		return time.Time{}, fmt.Errorf("waiting for sandbox %s/%s to be Ready: %w", m.ns, name, ctx.Err())
	}
}

// waitGone blocks until the namespace has no pool Pod left.
func (m *poolMeter) waitGone(ctx context.Context, timeout time.Duration) error {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		m.mu.Lock()
		left, ch := len(m.pods), m.changed
		m.mu.Unlock()
		if left == 0 {
			return nil
		}
		select {
		case <-ch:
		case <-timer.C:
			return fmt.Errorf("waiting for the Pods of %s to go: %d left after %s", m.ns, left, timeout)
		case <-ctx.Done():
			return fmt.Errorf("waiting for the Pods of %s to go: %w (%d left)", m.ns, ctx.Err(), left)
		}
	}
}

// poolWindow is what the meter saw of one pool over [from, to].
type poolWindow struct {
	size, replicas, desired []availPoint
	// starts are the Pods first seen within the window, creating, that
	// became available.
	starts []podStart
}

func (m *poolMeter) window(pool string, from, to time.Time) poolWindow {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.pools[pool]
	if !ok {
		return poolWindow{size: stepsBetween(nil, from, to)}
	}
	w := poolWindow{size: stepsBetween(p.size, from, to)}
	if len(p.replicas) > 0 {
		w.replicas = stepsBetween(p.replicas, from, to)
	}
	if len(p.desired) > 0 {
		w.desired = stepsBetween(p.desired, from, to)
	}
	for _, s := range p.starts {
		if !s.seen.Before(from) && !s.seen.After(to) {
			w.starts = append(w.starts, s)
		}
	}
	return w
}

// doubleClaims are the Pods the watch saw change holder, by pool.
func (m *poolMeter) doubleClaims() map[string][]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string][]string, len(m.doubles))
	for pool, d := range m.doubles {
		out[pool] = append([]string(nil), d...)
	}
	return out
}
