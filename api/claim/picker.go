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
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
)

// Picker claims from one pool without listing it: an informer keeps the
// pool's available sandboxes in memory, so a Claim is one write. It is for a
// long-lived process that claims often; its methods are safe for concurrent
// use.
type Picker struct {
	w    *podWatch
	pool *available
}

// NewPicker watches the pool's available sandboxes (their metadata only)
// and returns once it has seen them all. ctx bounds the Picker's life, not
// only its start: it stops when ctx ends or on Stop.
func (c *Client) NewPicker(ctx context.Context, namespace, sandboxSet string) (*Picker, error) {
	p := &Picker{}
	p.w = newPodWatch(c, namespace, labels.SelectorFromSet(labels.Set(availableLabels(sandboxSet))), func(string) *available { return p.pool })
	p.pool = newAvailable(p.w, sandboxSet)
	if err := p.w.start(ctx, fmt.Sprintf("SandboxSet %s/%s", namespace, sandboxSet)); err != nil {
		return nil, err
	}
	return p, nil
}

// Claim is Client.Claim on the Picker's pool, with the same options, result
// and errors, but it picks from the watched set instead of a list.
func (p *Picker) Claim(ctx context.Context, agent string, opts ClaimOptions) (*Sandbox, error) {
	return p.w.c.claim(ctx, p.w.namespace, p.pool.sandboxSet, agent, opts, p.pool.run)
}

// Stop ends the watch and waits for it to finish. Claims fail after it.
func (p *Picker) Stop() { p.w.Stop() }

// NamespacePicker is a Picker for every pool of a namespace through one
// watch. API Priority and Fairness makes each Pod write in a namespace
// wider by a seat for every ten watches of its Pods, so a process that
// claims from many pools should hold one NamespacePicker, not a Picker per
// pool: the controller's writes then cost the same however many pools the
// process serves. It receives every pool's events, so a process that claims
// from one pool of a busy namespace is better served by a Picker. It keeps
// a set for every pool name it is asked for, so that a Claim can wait for
// a pool's first sandbox.
type NamespacePicker struct {
	w *podWatch

	mu    sync.Mutex
	pools map[string]*available // by SandboxSet, added on the first event or Claim
}

// NewNamespacePicker watches the available sandboxes of every pool in the
// namespace and returns once it has seen them all. ctx bounds its life, as
// for NewPicker.
func (c *Client) NewNamespacePicker(ctx context.Context, namespace string) (*NamespacePicker, error) {
	p := &NamespacePicker{pools: map[string]*available{}}
	state, err := labels.NewRequirement(agentsv1alpha1.LabelState, selection.Equals, []string{string(agentsv1alpha1.StateAvailable)})
	if err != nil {
		return nil, err
	}
	pool, err := labels.NewRequirement(agentsv1alpha1.LabelSandboxSet, selection.Exists, nil)
	if err != nil {
		return nil, err
	}
	p.w = newPodWatch(c, namespace, labels.NewSelector().Add(*state, *pool), p.pool)
	if err := p.w.start(ctx, "namespace "+namespace); err != nil {
		return nil, err
	}
	return p, nil
}

// Claim is Picker.Claim on the namespace's SandboxSet sandboxSet.
func (p *NamespacePicker) Claim(ctx context.Context, sandboxSet, agent string, opts ClaimOptions) (*Sandbox, error) {
	return p.w.c.claim(ctx, p.w.namespace, sandboxSet, agent, opts, p.pool(sandboxSet).run)
}

// Stop ends the watch and waits for it to finish. Claims fail after it.
func (p *NamespacePicker) Stop() { p.w.Stop() }

// pool returns the set of the SandboxSet's available sandboxes, adding an
// empty one for a pool not seen yet, so that a Claim can wait on it.
func (p *NamespacePicker) pool(sandboxSet string) *available {
	p.mu.Lock()
	defer p.mu.Unlock()
	s, ok := p.pools[sandboxSet]
	if !ok {
		s = newAvailable(p.w, sandboxSet)
		p.pools[sandboxSet] = s
	}
	return s
}

// podWatch is an informer of available Pods' metadata that hands each
// event to the set of the Pod's pool.
type podWatch struct {
	c         *Client
	namespace string
	selector  labels.Selector
	poolSet   func(sandboxSet string) *available
	store     cache.Store // the informer's view of the selected Pods
	stop      context.CancelFunc
	done      chan struct{} // closed once the informer has stopped
}

func newPodWatch(c *Client, namespace string, selector labels.Selector, poolSet func(string) *available) *podWatch {
	return &podWatch{c: c, namespace: namespace, selector: selector, poolSet: poolSet, done: make(chan struct{})}
}

// start runs the informer until ctx ends or Stop, and returns once it has
// synced, or failed to; watched names what it watches, for the error.
func (w *podWatch) start(ctx context.Context, watched string) error {
	ctx, w.stop = context.WithCancel(ctx)
	// The reflector retries a refused list or watch forever; refused lets a
	// Picker without the rights fail at once instead.
	refused := make(chan error, 1)
	store, informer := cache.NewInformerWithOptions(cache.InformerOptions{
		ListerWatcher: w.listWatch(refused),
		ObjectType:    &metav1.PartialObjectMetadata{},
		Transform:     dropManagedFields,
		Handler: cache.ResourceEventHandlerFuncs{
			AddFunc:    w.observe,
			UpdateFunc: func(_, obj any) { w.observe(obj) },
			DeleteFunc: w.forget,
		},
	})
	w.store = store
	go func() {
		defer close(w.done)
		informer.RunWithContext(ctx)
	}()
	// The informer calls the handlers before it counts an item delivered, so
	// once synced the sets hold every available sandbox.
	select {
	case <-informer.HasSyncedChecker().Done():
		return nil
	case err := <-refused:
		w.Stop()
		return err
	case <-ctx.Done():
		w.Stop()
		return fmt.Errorf("watching %s for available sandboxes: %w", watched, ctx.Err())
	}
}

// Stop ends the watch and waits for it to finish.
func (w *podWatch) Stop() {
	w.stop()
	<-w.done
}

// dropManagedFields keeps the store lean: a Pod's managedFields are most of
// its metadata, and nothing here reads them.
func dropManagedFields(obj any) (any, error) {
	if m, ok := obj.(*metav1.PartialObjectMetadata); ok {
		m.ManagedFields = nil
	}
	return obj, nil
}

// listWatch lists and watches the selected Pods through the Client. The
// reflector's options carry the resourceVersion, paging, bookmarks and
// timeout; the namespace and selector are added to them.
func (w *podWatch) listWatch(refused chan<- error) *cache.ListWatch {
	options := func(raw *metav1.ListOptions) []client.ListOption {
		return []client.ListOption{&client.ListOptions{Raw: raw, Limit: raw.Limit, Continue: raw.Continue},
			client.InNamespace(w.namespace), client.MatchingLabelsSelector{Selector: w.selector}}
	}
	refuse := func(err error, verb string) error {
		if apierrors.IsForbidden(err) {
			select {
			case refused <- apiError(err, verb, "pods", w.namespace, agentRoleHint):
			default:
			}
		}
		return err
	}
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			list := podMetadataList()
			return list, refuse(w.c.c.List(ctx, list, options(&opts)...), "list")
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			watcher, err := w.c.c.Watch(ctx, podMetadataList(), options(&opts)...)
			return watcher, refuse(err, "watch")
		},
	}
}

// observe hands an added or updated Pod to its pool's set.
func (w *podWatch) observe(obj any) {
	if m, ok := obj.(*metav1.PartialObjectMetadata); ok {
		w.poolSet(m.Labels[agentsv1alpha1.LabelSandboxSet]).observe(m)
	}
}

// forget hands a Pod that left the selector to its pool's set, including
// the tombstone of a Delete missed by the watch and found by a relist.
func (w *podWatch) forget(obj any) {
	name, err := cache.DeletionHandlingObjectToName(obj)
	if err != nil {
		return
	}
	if tombstone, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tombstone.Obj
	}
	if m, ok := obj.(*metav1.PartialObjectMetadata); ok {
		w.poolSet(m.Labels[agentsv1alpha1.LabelSandboxSet]).forget(name.Name)
	}
}

// stored is the informer's view of the Pod, if it still shows it.
func (w *podWatch) stored(name string) (*metav1.PartialObjectMetadata, bool) {
	obj, exists, err := w.store.GetByKey(cache.ObjectName{Namespace: w.namespace, Name: name}.String())
	m, ok := obj.(*metav1.PartialObjectMetadata)
	return m, ok && exists && err == nil
}

// available is the claimable sandboxes of one pool, as a watch shows them.
type available struct {
	w          *podWatch
	sandboxSet string

	mu      sync.Mutex
	names   []string            // claimable, in no order, for an O(1) random pick
	index   map[string]int      // each name's place in names, for an O(1) removal
	taken   map[string]struct{} // picked here, and not yet seen leaving the pool
	arrived chan struct{}       // closed, and replaced, when a name is added
}

func newAvailable(w *podWatch, sandboxSet string) *available {
	return &available{w: w, sandboxSet: sandboxSet,
		index: map[string]int{}, taken: map[string]struct{}{}, arrived: make(chan struct{})}
}

// run claims picked names until one wins. After a win, a Conflict (another
// agent holds the Pod) or a NotFound, the stored Pod has left the pool's
// selector, so the informer's Delete is certain to come: the name stays
// taken until then, and an event still showing the Pod available, sent
// before the claim, cannot offer it again. Any other failure (the Pod is not
// Ready, a timeout, a 5xx) proves nothing, and a Pod that stays available
// would never be offered again if its name stayed taken; so the name is
// released, and goes back if the informer still shows the Pod claimable.
func (s *available) run(ctx context.Context, a *attempt) (*corev1.Pod, error) {
	deadline := a.start.Add(a.opts.Wait)
	for {
		name, err := s.pick(ctx, deadline)
		switch {
		case err != nil:
			return nil, err
		case name == "":
			return a.whenEmpty(ctx)
		case a.claims == a.opts.MaxAttempts:
			s.release(name)
			return nil, a.lostRaces()
		}
		a.claims++
		pod, err := a.claimPod(ctx, name)
		if err != nil && !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
			s.release(name)
		}
		if err == nil || !lostRace(err) {
			return pod, err
		}
	}
}

// pick takes a name out of the set, waiting until deadline for one to
// arrive. It returns "" if none did.
func (s *available) pick(ctx context.Context, deadline time.Time) (string, error) {
	wait, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	for {
		select {
		case <-s.w.done:
			return "", fmt.Errorf("the Picker of SandboxSet %s/%s is stopped", s.w.namespace, s.sandboxSet)
		default:
		}
		name, arrived := s.take()
		if name != "" {
			return name, nil
		}
		select {
		case <-arrived:
		case <-s.w.done:
		case <-wait.Done():
			if err := ctx.Err(); err != nil {
				return "", fmt.Errorf("waiting for an available sandbox in SandboxSet %s/%s: %w", s.w.namespace, s.sandboxSet, err)
			}
			return "", nil
		}
	}
}

// take removes a random name from the set and marks it taken, so that no
// other Claim here sends a claim for it. With none, it returns the channel
// closed at the next arrival.
func (s *available) take() (string, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.names) == 0 {
		return "", s.arrived
	}
	name := s.names[rand.IntN(len(s.names))]
	s.remove(name)
	s.taken[name] = struct{}{}
	return name, nil
}

// release undoes take after a claim that did not show the Pod gone from the
// pool. It reads the informer's store under mu: the informer updates the
// store before it calls the handlers, so a Delete not yet in the store is
// still to be handled, and will remove the name again.
func (s *available) release(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.taken, name)
	if m, ok := s.w.stored(name); ok && unclaimed(m) {
		s.add(name)
	}
}

// observe handles an added or updated Pod. A taken name is not added back:
// the event may predate the claim.
func (s *available) observe(m *metav1.PartialObjectMetadata) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch _, taken := s.taken[m.Name]; {
	case !unclaimed(m):
		s.drop(m.Name)
	case !taken:
		s.add(m.Name)
	}
}

// forget handles a Pod that left the selector.
func (s *available) forget(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drop(name)
}

// drop removes a name the informer saw leave the pool, or shown claimed or
// terminating, which it never comes back from. Every taken name ends here
// or in release, so taken holds only claims in flight and claimed Pods whose
// Delete the watch has yet to deliver.
func (s *available) drop(name string) {
	s.remove(name)
	delete(s.taken, name)
}

// add puts name in the set and wakes the Claims waiting for one.
func (s *available) add(name string) {
	if _, ok := s.index[name]; ok {
		return
	}
	s.index[name] = len(s.names)
	s.names = append(s.names, name)
	close(s.arrived)
	s.arrived = make(chan struct{})
}

// remove takes name out of the set: the last name fills its place.
func (s *available) remove(name string) {
	i, ok := s.index[name]
	if !ok {
		return
	}
	last := len(s.names) - 1
	s.names[i] = s.names[last]
	s.index[s.names[i]] = i
	s.names = s.names[:last]
	delete(s.index, name)
}
