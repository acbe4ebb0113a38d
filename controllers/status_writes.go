package controllers

import (
	"sync"

	"k8s.io/apimachinery/pkg/types"
)

// statusWrites remembers the resourceVersion each SandboxSet got from this
// manager's last status write, so that a reconcile knows whether its cached
// copy shows that write yet.
type statusWrites struct {
	mu       sync.Mutex
	versions map[types.NamespacedName]string
}

// wrote records the resourceVersion a status write returned.
func (w *statusWrites) wrote(key types.NamespacedName, resourceVersion string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.versions[key] = resourceVersion
}

// seen says whether a cached copy at resourceVersion shows the last status
// write, or there was none.
func (w *statusWrites) seen(key types.NamespacedName, resourceVersion string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	last, ok := w.versions[key]
	return !ok || last == resourceVersion
}

func (w *statusWrites) forget(key types.NamespacedName) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.versions, key)
}
