package controllers

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
)

// statusWrites remembers, for each SandboxSet, the resourceVersion and time
// of this manager's last status write, so that a reconcile knows whether
// its cached copy shows that write yet, and when the next may go out; and
// since when the pool's status has differed from it.
type statusWrites struct {
	mu   sync.Mutex
	last map[types.NamespacedName]statusWrite
}

type statusWrite struct {
	resourceVersion string
	at              time.Time
	status          agentsv1alpha1.SandboxSetStatus
	// movedAt is when a pass first found the status moved from this write,
	// zero while it has not or has come back.
	movedAt time.Time
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

// holdOff records that the status has moved from the last write at now,
// unless it moved earlier, and says how long a write must wait to come
// interval after both: 0 if it need not. Waiting after the move, not only
// after the write, lets a change that undoes itself within interval, a
// claim and its refill, go unwritten.
func (w *statusWrites) holdOff(key types.NamespacedName, now time.Time, interval time.Duration) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	last, ok := w.last[key]
	if !ok {
		return 0
	}
	if last.movedAt.IsZero() {
		last.movedAt = now
		w.last[key] = last
	}
	due := last.at
	if last.movedAt.After(due) {
		due = last.movedAt
	}
	return max(0, due.Add(interval).Sub(now))
}

// unmoved records that the status is back to the last write.
func (w *statusWrites) unmoved(key types.NamespacedName) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if last, ok := w.last[key]; ok {
		last.movedAt = time.Time{}
		w.last[key] = last
	}
}

func (w *statusWrites) forget(key types.NamespacedName) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.last, key)
}
