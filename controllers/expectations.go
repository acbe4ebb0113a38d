package controllers

import (
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/util/workqueue"
)

// expectations remembers, per SandboxSet, the Pods this manager has asked the
// API server to create or delete and has not yet seen reflected in its
// cache. They are recorded before the request is sent, so a watch event that
// beats the bookkeeping cannot be missed; the reconciler then counts pending
// creations as creating Pods and pending deletions as gone, instead of
// waiting for the cache, so a lagging cache neither over-creates nor stalls.
//
// Relabels are tracked by the resourceVersion the patch was made from: a
// pass that follows before the cache shows the relabel would otherwise
// send it again, to conflict, while the refill's writes are what it lacks.
//
// Creations are tracked by the Pod names the controller picks itself. An
// entry the cache never confirms (a Pod deleted before the informer saw it,
// a request that failed ambiguously) expires after ttl, so nothing stalls
// for longer than that.
type expectations struct {
	ttl time.Duration
	now func() time.Time
	// refusals spaces a pool's creations after the API server refuses them.
	// Pod events wake a pool at any time, so the workqueue's own backoff,
	// which only delays requeues of failed passes, cannot do it.
	refusals workqueue.TypedRateLimiter[types.NamespacedName]

	mu    sync.Mutex
	pools map[types.NamespacedName]*pending
}

type pending struct {
	creates map[string]time.Time
	deletes map[types.UID]time.Time
	// relabels are Pods whose state label this manager has patched, or
	// found changed since, with the version its cache had then.
	relabels map[types.UID]relabel
	// refusal is the API server's last refusal of a creation, and retryAt
	// the earliest time the pool may try again, with one probe. Kept here,
	// not read back from the status in a cache that may lag.
	refusal error
	retryAt time.Time
}

type relabel struct {
	from string
	at   time.Time
}

func newExpectations(ttl, firstRetry, maxRetry time.Duration) *expectations {
	return &expectations{
		ttl:      ttl,
		now:      time.Now,
		refusals: workqueue.NewTypedItemExponentialFailureRateLimiter[types.NamespacedName](firstRetry, maxRetry),
		pools:    map[types.NamespacedName]*pending{},
	}
}

func (e *expectations) pool(key types.NamespacedName) *pending {
	p, ok := e.pools[key]
	if !ok {
		p = &pending{creates: map[string]time.Time{}, deletes: map[types.UID]time.Time{}, relabels: map[types.UID]relabel{}}
		e.pools[key] = p
	}
	return p
}

// expectCreations records Pods about to be created.
func (e *expectations) expectCreations(key types.NamespacedName, names []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	now, p := e.now(), e.pool(key)
	for _, name := range names {
		p.creates[name] = now
	}
}

// creationFailed drops a creation the API server refused.
func (e *expectations) creationFailed(key types.NamespacedName, name string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.pool(key).creates, name)
}

// expectDeletion records a Pod about to be deleted.
func (e *expectations) expectDeletion(key types.NamespacedName, uid types.UID) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.pool(key).deletes[uid] = e.now()
}

// deletionFailed drops a deletion the API server refused.
func (e *expectations) deletionFailed(key types.NamespacedName, uid types.UID) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.pool(key).deletes, uid)
}

// relabelSent records that pod, as cached, needs no relabel patch again:
// one was applied, or refused because the Pod has changed since.
func (e *expectations) relabelSent(key types.NamespacedName, pod *corev1.Pod) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.pool(key).relabels[pod.UID] = relabel{from: pod.ResourceVersion, at: e.now()}
}

// withoutRelabelled drops the Pods already relabelled from the version the
// cache still shows.
func (e *expectations) withoutRelabelled(key types.NamespacedName, pods []*corev1.Pod) []*corev1.Pod {
	e.mu.Lock()
	defer e.mu.Unlock()
	p, ok := e.pools[key]
	if !ok || len(p.relabels) == 0 {
		return pods
	}
	var out []*corev1.Pod
	for _, pod := range pods {
		if r, sent := p.relabels[pod.UID]; !sent || r.from != pod.ResourceVersion {
			out = append(out, pod)
		}
	}
	return out
}

// creationsDone records how the last creation pass ended. A refusal doubles
// the time until the pool may create again; a success ends the backoff.
func (e *expectations) creationsDone(key types.NamespacedName, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := e.pool(key)
	p.refusal = err
	if err == nil {
		e.refusals.Forget(key)
		p.retryAt = time.Time{}
		return
	}
	p.retryAt = e.now().Add(e.refusals.When(key))
}

// creationBackoff returns how long the pool must still wait before it
// probes again, and the refusal that ended its last creation pass, if any.
func (e *expectations) creationBackoff(key types.NamespacedName) (time.Duration, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	p, ok := e.pools[key]
	if !ok || p.refusal == nil {
		return 0, nil
	}
	return max(p.retryAt.Sub(e.now()), 0), p.refusal
}

// observe settles the expectations the cached Pods confirm, expires old ones,
// and returns what is still pending: Pod names created but not yet cached,
// and UIDs deleted but still cached; and how many expired, each a watch
// event the cache never delivered.
func (e *expectations) observe(key types.NamespacedName, cached []*corev1.Pod) (creates sets.Set[string], deletes sets.Set[types.UID], expiredCount int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	p, ok := e.pools[key]
	if !ok {
		return sets.New[string](), sets.New[types.UID](), 0
	}
	// One scan of the pool against the few expectations, rather than sets
	// of the whole pool on every pass: most passes expect nothing.
	var stillCached, unseenRelabels sets.Set[types.UID]
	if len(p.creates) > 0 || len(p.deletes) > 0 || len(p.relabels) > 0 {
		stillCached, unseenRelabels = sets.New[types.UID](), sets.New[types.UID]()
		for _, pod := range cached {
			delete(p.creates, pod.Name) // confirmed
			if _, deleting := p.deletes[pod.UID]; deleting {
				stillCached.Insert(pod.UID)
			}
			if r, ok := p.relabels[pod.UID]; ok && r.from == pod.ResourceVersion {
				unseenRelabels.Insert(pod.UID)
			}
		}
	}
	expired := e.now().Add(-e.ttl)
	for name, at := range p.creates {
		if at.Before(expired) {
			expiredCount++
			delete(p.creates, name)
		}
	}
	for uid, at := range p.deletes {
		switch {
		case !stillCached.Has(uid):
			delete(p.deletes, uid) // confirmed
		case at.Before(expired):
			expiredCount++
			delete(p.deletes, uid)
		}
	}
	for uid, r := range p.relabels {
		switch {
		case !unseenRelabels.Has(uid):
			delete(p.relabels, uid) // the cache has moved on, or the Pod is gone
		case r.at.Before(expired):
			expiredCount++
			delete(p.relabels, uid)
		}
	}
	return sets.KeySet(p.creates), sets.KeySet(p.deletes), expiredCount
}

// forget drops everything about a SandboxSet that no longer exists.
func (e *expectations) forget(key types.NamespacedName) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.pools, key)
	e.refusals.Forget(key)
}
