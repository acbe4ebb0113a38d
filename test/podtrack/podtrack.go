// Package podtrack counts every Pod ever created in a namespace, for tests
// that assert no over-creation. It counts by UID from a watch that resumes
// from its last resourceVersion when the API server closes it, as the API
// server does to a watcher that falls behind a burst, so no creation goes
// uncounted. If the watch cannot resume (its resourceVersion expired), the
// count would silently stop growing; Err says so, and every check of a
// count must look at it.
package podtrack

import (
	"context"
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
)

// Creations is a running count of the Pods created in one namespace.
type Creations struct {
	mu      sync.Mutex
	uids    sets.Set[types.UID]
	err     error
	stopped bool
	w       watch.Interface
}

// Count starts counting the Pods in ns, including those that exist now.
func Count(ctx context.Context, cfg *rest.Config, ns string) (*Creations, error) {
	clientset, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating clientset: %w", err)
	}
	list, err := clientset.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing Pods in %s: %w", ns, err)
	}
	w, err := watchtools.NewRetryWatcherWithContext(ctx, list.ResourceVersion, &toolscache.ListWatch{
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			return clientset.CoreV1().Pods(ns).Watch(ctx, opts)
		},
	})
	if err != nil {
		return nil, fmt.Errorf("watching Pods in %s: %w", ns, err)
	}
	c := &Creations{uids: sets.New[types.UID](), w: w}
	for i := range list.Items {
		c.uids.Insert(list.Items[i].UID)
	}
	go func() {
		for ev := range w.ResultChan() {
			c.mu.Lock()
			switch pod, ok := ev.Object.(*corev1.Pod); {
			case ok && ev.Type == watch.Added:
				c.uids.Insert(pod.UID)
			case ev.Type == watch.Error && c.err == nil:
				c.err = fmt.Errorf("the watch of Pods in %s failed, so the count stopped: %w", ns, apierrors.FromObject(ev.Object))
			}
			c.mu.Unlock()
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if !c.stopped && c.err == nil {
			c.err = fmt.Errorf("the watch of Pods in %s ended, so the count stopped", ns)
		}
	}()
	return c, nil
}

// Counted returns the count and Err together, the form in which Gomega's
// Eventually and Consistently check both.
func (c *Creations) Counted() (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.uids.Len(), c.err
}

// Err says why the count stopped before Stop, if it did: a count that
// stopped early may be short.
func (c *Creations) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Count returns how many distinct Pods have been seen.
func (c *Creations) Count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.uids.Len()
}

// Stop ends the watch.
func (c *Creations) Stop() {
	c.mu.Lock()
	c.stopped = true
	c.mu.Unlock()
	c.w.Stop()
}
