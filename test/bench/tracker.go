package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	toolscache "k8s.io/client-go/tools/cache"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
)

// podClass is where a Pod stands from an agent's point of view.
type podClass int

const (
	classCreating    podClass = iota // in the pool, not claimable yet
	classAvailable                   // in the pool, claimable now
	classClaimed                     // out of the pool, held by an agent
	classTerminating                 // being deleted
)

// counts is a snapshot of a tracker.
type counts struct {
	available, creating, claimed, terminating int
}

func (c counts) pool() int  { return c.available + c.creating }
func (c counts) total() int { return c.available + c.creating + c.claimed + c.terminating }

func (c counts) String() string {
	return fmt.Sprintf("available %d, creating %d, claimed %d, terminating %d",
		c.available, c.creating, c.claimed, c.terminating)
}

// tracker follows one pool's Pods through a watch (an informer), so waits
// end the moment the API server reports a change, and it remembers the
// instants that matter: when availability reached a target, and the lowest
// it fell to.
type tracker struct {
	name     string
	classify func(*corev1.Pod) podClass
	stop     chan struct{}

	mu        sync.Mutex
	pods      map[string]podClass // by name; names are never reused here
	availName map[string]bool     // the available Pods' names
	c         counts
	changed   chan struct{} // closed and replaced on every change
	lastEvent time.Time
	target    int       // available count that fullAt records
	fullAt    time.Time // when available last rose to target; zero below it
	low       int       // lowest available since resetLow
	// newRev counts, by revision label, the Pods first seen since markNew:
	// which revision the controller created them at.
	newRev map[string]int
	// availHistory is every change of the available count, oldest first,
	// for the report's charts. A point is 32 bytes and a pool changes a
	// few times per claim, so keeping the whole run costs little.
	availHistory []availPoint
}

// availPoint is the available count from at until the next point.
type availPoint struct {
	at        time.Time
	available int
}

// newTracker starts an informer on the Pods in ns matching selector.
func newTracker(ctx context.Context, cs kubernetes.Interface, name, ns, selector string, classify func(*corev1.Pod) podClass) (*tracker, error) {
	t := &tracker{
		name: name, classify: classify, stop: make(chan struct{}),
		pods: map[string]podClass{}, availName: map[string]bool{}, changed: make(chan struct{}),
	}
	factory := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(ns),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = selector }))
	inf := factory.Core().V1().Pods().Informer()
	if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { t.set(obj) },
		UpdateFunc: func(_, obj any) { t.set(obj) },
		DeleteFunc: t.remove,
	}); err != nil {
		return nil, fmt.Errorf("watching the Pods of %s: %w", name, err)
	}
	factory.Start(t.stop)
	syncCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if !toolscache.WaitForCacheSync(syncCtx.Done(), inf.HasSynced) {
		close(t.stop)
		return nil, fmt.Errorf("watching the Pods of %s: the informer did not sync within a minute", name)
	}
	return t, nil
}

func (t *tracker) close() { close(t.stop) }

func (t *tracker) set(obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	class := t.classify(pod)
	if pod.DeletionTimestamp != nil {
		class = classTerminating
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if old, ok := t.pods[pod.Name]; ok {
		t.add(pod.Name, old, -1)
	} else if t.newRev != nil {
		t.newRev[pod.Labels[agentsv1alpha1.LabelRevision]]++
	}
	t.pods[pod.Name] = class
	t.add(pod.Name, class, +1)
	t.notify()
}

// deletedPod is the Pod an informer's delete event is about: the Pod
// itself, or the last state a tombstone knew of it.
func deletedPod(obj any) (*corev1.Pod, bool) {
	if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	return pod, ok
}

func (t *tracker) remove(obj any) {
	pod, ok := deletedPod(obj)
	if !ok {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if old, ok := t.pods[pod.Name]; ok {
		t.add(pod.Name, old, -1)
		delete(t.pods, pod.Name)
		t.notify()
	}
}

// add moves the count of class by delta. The caller holds mu.
func (t *tracker) add(name string, class podClass, delta int) {
	switch class {
	case classAvailable:
		t.c.available += delta
		if delta > 0 {
			t.availName[name] = true
		} else {
			delete(t.availName, name)
		}
	case classCreating:
		t.c.creating += delta
	case classClaimed:
		t.c.claimed += delta
	case classTerminating:
		t.c.terminating += delta
	}
}

// notify records the instants and wakes the waiters. The caller holds mu.
func (t *tracker) notify() {
	now := time.Now()
	t.lastEvent = now
	switch {
	case t.c.available < t.target:
		t.fullAt = time.Time{}
	case t.fullAt.IsZero():
		t.fullAt = now
	}
	t.low = min(t.low, t.c.available)
	if n := len(t.availHistory); n == 0 || t.availHistory[n-1].available != t.c.available {
		t.availHistory = append(t.availHistory, availPoint{at: now, available: t.c.available})
	}
	close(t.changed)
	t.changed = make(chan struct{})
}

func (t *tracker) counts() counts {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.c
}

// availableNames lists the Pods that are claimable now.
func (t *tracker) availableNames() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	names := make([]string, 0, len(t.availName))
	for n := range t.availName {
		names = append(names, n)
	}
	return names
}

// setTarget makes fullAt record when available reaches n.
func (t *tracker) setTarget(n int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.target = n
	t.fullAt = time.Time{}
	if t.c.available >= n {
		t.fullAt = time.Now()
	}
}

// fullSince is when available last rose to the target, zero if below it.
func (t *tracker) fullSince() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.fullAt
}

// resetLow starts tracking the lowest available count from now.
func (t *tracker) resetLow() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.low = t.c.available
}

// markNew starts counting the Pods first seen from now, by revision.
func (t *tracker) markNew() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.newRev = map[string]int{}
}

// newAt returns how many Pods first seen since markNew had revision rev.
func (t *tracker) newAt(rev string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.newRev[rev]
}

// availableBetween returns the available count over [from, to]: its value
// at from, every change after it, and its value at to, so that the line
// spans the whole window even when nothing changed at its ends.
func (t *tracker) availableBetween(from, to time.Time) []availPoint {
	t.mu.Lock()
	defer t.mu.Unlock()
	return stepsBetween(t.availHistory, from, to)
}

func (t *tracker) lowest() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.low
}

// waitFor blocks until cond holds, woken by each change, or fails after
// timeout with the counts it last saw.
func (t *tracker) waitFor(ctx context.Context, timeout time.Duration, what string, cond func(counts) bool) error {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		t.mu.Lock()
		c, ch := t.c, t.changed
		t.mu.Unlock()
		if cond(c) {
			return nil
		}
		select {
		case <-ch:
		case <-timer.C:
			return fmt.Errorf("%s: waiting for %s: timed out after %s (%s)", t.name, what, timeout, c)
		case <-ctx.Done():
			return fmt.Errorf("%s: waiting for %s: %w (%s)", t.name, what, ctx.Err(), c)
		}
	}
}

// waitQuiet blocks until no Pod has changed for quiet, so that a late
// extra creation is counted before a run's creations are read. It is woken
// by the watch, not by polling the API server.
func (t *tracker) waitQuiet(ctx context.Context, quiet, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		t.mu.Lock()
		since, ch := time.Since(t.lastEvent), t.changed
		t.mu.Unlock()
		if since >= quiet {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: Pods still changing after %s", t.name, timeout)
		}
		timer := time.NewTimer(quiet - since)
		select {
		case <-ch:
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return fmt.Errorf("%s: waiting for the Pods to settle: %w", t.name, ctx.Err())
		}
		timer.Stop()
	}
}
