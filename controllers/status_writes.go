package controllers

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
)

// statusWrites remembers, for each SandboxSet, the resourceVersion and time
// of this manager's last status write, so that a reconcile knows whether
// its cached copy shows that write yet, and when the next may go out.
type statusWrites struct {
	mu   sync.Mutex
	last map[types.NamespacedName]statusWrite
}

type statusWrite struct {
	resourceVersion string
	at              time.Time
	status          agentsv1alpha1.SandboxSetStatus
}

func newStatusWrites() *statusWrites {
	return &statusWrites{last: map[types.NamespacedName]statusWrite{}}
}

// wrote records a status write of status at at, and the resourceVersion it
// returned.
func (w *statusWrites) wrote(key types.NamespacedName, resourceVersion string, at time.Time, status *agentsv1alpha1.SandboxSetStatus) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.last[key] = statusWrite{resourceVersion: resourceVersion, at: at, status: *status.DeepCopy()}
}

// seen says whether a cached copy at resourceVersion shows the last status
// write, or there was none.
func (w *statusWrites) seen(key types.NamespacedName, resourceVersion string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	last, ok := w.last[key]
	return !ok || last.resourceVersion == resourceVersion
}

// lastWritten is the status last written, if any.
func (w *statusWrites) lastWritten(key types.NamespacedName) (agentsv1alpha1.SandboxSetStatus, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	last, ok := w.last[key]
	return last.status, ok
}

// holdOff is how long a write at now must wait to come interval after the
// last one: 0 if it need not.
func (w *statusWrites) holdOff(key types.NamespacedName, now time.Time, interval time.Duration) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	last, ok := w.last[key]
	if !ok {
		return 0
	}
	return max(0, last.at.Add(interval).Sub(now))
}

func (w *statusWrites) forget(key types.NamespacedName) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.last, key)
}
