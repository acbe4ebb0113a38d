package claim

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Picker claims from one pool without listing it: an informer keeps the
// pool's available sandboxes in memory, so a Claim is one write. It is for a
// long-lived process that claims often; its methods are safe for concurrent
// use.
type Picker struct {
	c                     *Client
	namespace, sandboxSet string
	store                 cache.Store // the informer's view of the pool's available Pods
	stop                  context.CancelFunc
	done                  chan struct{} // closed once the informer has stopped

	mu      sync.Mutex
	names   []string            // claimable, in no order, for an O(1) random pick
	index   map[string]int      // each name's place in names, for an O(1) removal
	taken   map[string]struct{} // picked here, and not yet seen leaving the pool
	arrived chan struct{}       // closed, and replaced, when a name is added
}

// NewPicker watches the pool's available sandboxes (their metadata only)
// and returns once it has seen them all. ctx bounds the Picker's life, not
// only its start: it stops when ctx ends or on Stop.
func (c *Client) NewPicker(ctx context.Context, namespace, sandboxSet string) (*Picker, error) {
	ctx, stop := context.WithCancel(ctx)
	p := newPicker(c, namespace, sandboxSet)
	p.stop = stop
	// The reflector retries a refused list or watch forever; refused lets a
	// Picker without the rights fail at once instead.
	refused := make(chan error, 1)
	store, informer := cache.NewInformerWithOptions(cache.InformerOptions{
		ListerWatcher: p.listWatch(refused),
		ObjectType:    &metav1.PartialObjectMetadata{},
		Transform:     dropManagedFields,
		Handler: cache.ResourceEventHandlerFuncs{
			AddFunc:    p.observe,
			UpdateFunc: func(_, obj any) { p.observe(obj) },
			DeleteFunc: p.forget,
		},
	})
	p.store = store
	go func() {
		defer close(p.done)
		informer.RunWithContext(ctx)
	}()
	// The informer calls the handlers before it counts an item delivered, so
	// once synced the set holds every available sandbox.
	select {
	case <-informer.HasSyncedChecker().Done():
		return p, nil
	case err := <-refused:
		p.Stop()
		return nil, err
	case <-ctx.Done():
		p.Stop()
		return nil, fmt.Errorf("watching SandboxSet %s/%s for available sandboxes: %w", namespace, sandboxSet, ctx.Err())
	}
}

// dropManagedFields keeps the store lean: a Pod's managedFields are most of
// its metadata, and nothing here reads them.
func dropManagedFields(obj any) (any, error) {
	if m, ok := obj.(*metav1.PartialObjectMetadata); ok {
		m.ManagedFields = nil
	}
	return obj, nil
}

func newPicker(c *Client, namespace, sandboxSet string) *Picker {
	return &Picker{c: c, namespace: namespace, sandboxSet: sandboxSet, done: make(chan struct{}),
		index: map[string]int{}, taken: map[string]struct{}{}, arrived: make(chan struct{})}
}

// listWatch lists and watches the pool's available Pods through the Client.
// The reflector's options carry the resourceVersion, paging, bookmarks and
// timeout; the namespace and selector are added to them.
func (p *Picker) listWatch(refused chan<- error) *cache.ListWatch {
	options := func(raw *metav1.ListOptions) []client.ListOption {
		return []client.ListOption{&client.ListOptions{Raw: raw, Limit: raw.Limit, Continue: raw.Continue},
			client.InNamespace(p.namespace), availableLabels(p.sandboxSet)}
	}
	refuse := func(err error, verb string) error {
		if apierrors.IsForbidden(err) {
			select {
			case refused <- apiError(err, verb, "pods", p.namespace, agentRoleHint):
			default:
			}
		}
		return err
	}
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			list := podMetadataList()
			return list, refuse(p.c.c.List(ctx, list, options(&opts)...), "list")
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			w, err := p.c.c.Watch(ctx, podMetadataList(), options(&opts)...)
			return w, refuse(err, "watch")
		},
	}
}

// Stop ends the watch and waits for it to finish. Claims fail after it.
func (p *Picker) Stop() {
	p.stop()
	<-p.done
}

// Claim is Client.Claim on the Picker's pool, with the same options, result
// and errors, but it picks from the watched set instead of a list.
func (p *Picker) Claim(ctx context.Context, agent string, opts ClaimOptions) (*Sandbox, error) {
	return p.c.claim(ctx, p.namespace, p.sandboxSet, agent, opts, p.run)
}

// run claims picked names until one wins. After a win, a Conflict (another
// agent holds the Pod) or a NotFound, the stored Pod has left the pool's
// selector, so the informer's Delete is certain to come: the name stays
// taken until then, and an event still showing the Pod available, sent
// before the claim, cannot offer it again. Any other failure (the Pod is not
// Ready, a timeout, a 5xx) proves nothing, and a Pod that stays available
// would never be offered again if its name stayed taken; so the name is
// released, and goes back if the informer still shows the Pod claimable.
func (p *Picker) run(ctx context.Context, a *attempt) (*corev1.Pod, error) {
	deadline := a.start.Add(a.opts.Wait)
	for {
		name, err := p.pick(ctx, deadline)
		switch {
		case err != nil:
			return nil, err
		case name == "":
			return a.whenEmpty(ctx)
		case a.claims == a.opts.MaxAttempts:
			p.release(name)
			return nil, a.lostRaces()
		}
		a.claims++
		pod, err := a.claimPod(ctx, name)
		if err != nil && !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
			p.release(name)
		}
		if err == nil || !lostRace(err) {
			return pod, err
		}
	}
}

// pick takes a name out of the set, waiting until deadline for one to
// arrive. It returns "" if none did.
func (p *Picker) pick(ctx context.Context, deadline time.Time) (string, error) {
	wait, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	for {
		select {
		case <-p.done:
			return "", fmt.Errorf("the Picker of SandboxSet %s/%s is stopped", p.namespace, p.sandboxSet)
		default:
		}
		name, arrived := p.take()
		if name != "" {
			return name, nil
		}
		select {
		case <-arrived:
		case <-p.done:
		case <-wait.Done():
			if err := ctx.Err(); err != nil {
				return "", fmt.Errorf("waiting for an available sandbox in SandboxSet %s/%s: %w", p.namespace, p.sandboxSet, err)
			}
			return "", nil
		}
	}
}

// take removes a random name from the set and marks it taken, so that no
// other Claim here sends a claim for it. With none, it returns the channel
// closed at the next arrival.
func (p *Picker) take() (string, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.names) == 0 {
		return "", p.arrived
	}
	name := p.names[rand.IntN(len(p.names))]
	p.remove(name)
	p.taken[name] = struct{}{}
	return name, nil
}

// release undoes take after a claim that did not show the Pod gone from the
// pool. It reads the informer's store under mu: the informer updates the
// store before it calls the handlers, so a Delete not yet in the store is
// still to be handled, and will remove the name again.
func (p *Picker) release(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.taken, name)
	obj, exists, err := p.store.GetByKey(cache.ObjectName{Namespace: p.namespace, Name: name}.String())
	if m, ok := obj.(*metav1.PartialObjectMetadata); ok && exists && err == nil && unclaimed(m) {
		p.add(name)
	}
}

// observe handles an added or updated Pod. A taken name is not added back:
// the event may predate the claim.
func (p *Picker) observe(obj any) {
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	switch _, taken := p.taken[m.Name]; {
	case !unclaimed(m):
		p.drop(m.Name)
	case !taken:
		p.add(m.Name)
	}
}

// forget handles a Pod that left the selector, including the tombstone of
// a Delete missed by the watch and found by a relist.
func (p *Picker) forget(obj any) {
	name, err := cache.DeletionHandlingObjectToName(obj)
	if err != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.drop(name.Name)
}

// drop removes a name the informer saw leave the pool, or shown claimed or
// terminating, which it never comes back from. Every taken name ends here
// or in release, so taken holds only claims in flight and claimed Pods whose
// Delete the watch has yet to deliver.
func (p *Picker) drop(name string) {
	p.remove(name)
	delete(p.taken, name)
}

// add puts name in the set and wakes the Claims waiting for one.
func (p *Picker) add(name string) {
	if _, ok := p.index[name]; ok {
		return
	}
	p.index[name] = len(p.names)
	p.names = append(p.names, name)
	close(p.arrived)
	p.arrived = make(chan struct{})
}

// remove takes name out of the set: the last name fills its place.
func (p *Picker) remove(name string) {
	i, ok := p.index[name]
	if !ok {
		return
	}
	last := len(p.names) - 1
	p.names[i] = p.names[last]
	p.index[p.names[i]] = i
	p.names = p.names[:last]
	delete(p.index, name)
}
