// Package podtrack counts every Pod ever created in a namespace, for tests
// that assert no over-creation. It counts by UID from a watch that resumes
// from its last resourceVersion when the API server closes it, as the API
// server does to a watcher that falls behind a burst, so no creation goes
// uncounted.
package podtrack

import (
	"context"
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
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
	mu   sync.Mutex
	uids sets.Set[types.UID]
	w    watch.Interface
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
			if pod, ok := ev.Object.(*corev1.Pod); ok && ev.Type == watch.Added {
				c.mu.Lock()
				c.uids.Insert(pod.UID)
				c.mu.Unlock()
			}
		}
	}()
	return c, nil
}

// Count returns how many distinct Pods have been seen.
func (c *Creations) Count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.uids.Len()
}

// Stop ends the watch.
func (c *Creations) Stop() { c.w.Stop() }
