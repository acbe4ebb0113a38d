package controllers

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// refillClock pairs claims with the replacement Pods they trigger, to
// measure claim-to-replacement latency. Claims are queued as the Pod watch
// sees them and matched, oldest first, with the next successful creations.
// Cold claims, which take nothing from the pool and have no replacement,
// wait apart until a reconcile reports them.
type refillClock struct {
	mu     sync.Mutex
	claims map[types.NamespacedName][]claim
	cold   map[types.NamespacedName][]claim
}

// claim is one sandbox leaving a pool.
type claim struct {
	pod, agent string
	at         time.Time
}

func newRefillClock() *refillClock {
	return &refillClock{claims: map[types.NamespacedName][]claim{}, cold: map[types.NamespacedName][]claim{}}
}

func (c *refillClock) claimed(key types.NamespacedName, at claim) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.claims[key] = append(c.claims[key], at)
}

// replaced returns the claims the next n creations answer.
func (c *refillClock) replaced(key types.NamespacedName, n int) []claim {
	c.mu.Lock()
	defer c.mu.Unlock()
	q := c.claims[key]
	n = min(n, len(q))
	answered := q[:n:n]
	if n == len(q) {
		delete(c.claims, key)
	} else {
		c.claims[key] = q[n:]
	}
	return answered
}

// claimedCold records a sandbox created already claimed.
func (c *refillClock) claimedCold(key types.NamespacedName, at claim) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cold[key] = append(c.cold[key], at)
}

// takeCold returns the cold claims not yet reported, and forgets them.
func (c *refillClock) takeCold(key types.NamespacedName) []claim {
	c.mu.Lock()
	defer c.mu.Unlock()
	taken := c.cold[key]
	delete(c.cold, key)
	return taken
}

func (c *refillClock) forget(key types.NamespacedName) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.claims, key)
	delete(c.cold, key)
}
