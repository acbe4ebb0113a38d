package controllers

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
)

func TestExpectations(t *testing.T) {
	key := types.NamespacedName{Namespace: "ns", Name: "demo"}
	now := time.Unix(1_000_000, 0)
	e := newExpectations(time.Minute, time.Second, 4*time.Second)
	e.now = func() time.Time { return now }
	cached := func(names ...string) []*corev1.Pod {
		var pods []*corev1.Pod
		for _, n := range names {
			pods = append(pods, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: n, UID: types.UID(n)}})
		}
		return pods
	}
	check := func(step string, pods []*corev1.Pod, wantCreates []string, wantDeletes []types.UID, wantExpired ...int) {
		t.Helper()
		creates, deletes, expired := e.observe(key, pods)
		if want := append(wantExpired, 0)[0]; expired != want {
			t.Errorf("%s: %d expired, want %d", step, expired, want)
		}
		if diff := cmp.Diff(sets.New(wantCreates...), creates); diff != "" {
			t.Errorf("%s: pending creates (-want +got):\n%s", step, diff)
		}
		if diff := cmp.Diff(sets.New(wantDeletes...), deletes); diff != "" {
			t.Errorf("%s: pending deletes (-want +got):\n%s", step, diff)
		}
	}

	check("nothing recorded", cached("a"), nil, nil)

	e.expectCreations(key, []string{"b", "c", "d"})
	e.creationFailed(key, "d")
	check("created, not yet cached", cached("a"), []string{"b", "c"}, nil)
	check("a watch event beat the bookkeeping", cached("a", "b"), []string{"c"}, nil)

	e.expectDeletion(key, "a")
	check("deleted, still cached", cached("a", "b"), []string{"c"}, []types.UID{"a"})
	check("deletion seen", cached("b"), []string{"c"}, nil)

	e.expectDeletion(key, "b")
	now = now.Add(2 * time.Minute)
	check("an unconfirmed creation and deletion expire instead of stalling the pool, and are counted", cached("b"), nil, nil, 2)

	refused := errors.New("exceeded quota")
	backoff := func(step string, wantWait time.Duration, wantRefusal error) {
		t.Helper()
		wait, refusal := e.creationBackoff(key)
		if wait != wantWait || !errors.Is(refusal, wantRefusal) {
			t.Errorf("%s: backoff %v with refusal %v, want %v with %v", step, wait, refusal, wantWait, wantRefusal)
		}
	}
	backoff("never refused", 0, nil)
	e.creationsDone(key, refused)
	backoff("refused once", time.Second, refused)
	now = now.Add(time.Second)
	backoff("waited out: the next pass probes", 0, refused)
	for _, want := range []time.Duration{2 * time.Second, 4 * time.Second, 4 * time.Second} {
		e.creationsDone(key, refused)
		backoff("refused again: the wait doubles, up to its maximum", want, refused)
	}
	e.creationsDone(key, nil)
	backoff("a creation succeeded", 0, nil)
	e.creationsDone(key, refused)
	backoff("refused after a success: the wait starts over", time.Second, refused)

	e.expectCreations(key, []string{"x"})
	e.forget(key)
	check("forgotten with the SandboxSet", nil, nil, nil)
	backoff("forgetting a SandboxSet forgets its refusals", 0, nil)
	e.creationsDone(key, refused)
	backoff("a SandboxSet made again under the same name starts over", time.Second, refused)
}

// A relabel is not sent again while the cache shows the Pod as it was
// when it was sent, and only then.
func TestRelabelExpectations(t *testing.T) {
	key := types.NamespacedName{Namespace: "ns", Name: "demo"}
	now := time.Unix(1_000_000, 0)
	e := newExpectations(time.Minute, time.Second, 4*time.Second)
	e.now = func() time.Time { return now }
	pod := func(name, version string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID(name), ResourceVersion: version}}
	}
	names := func(pods []*corev1.Pod) []string {
		var out []string
		for _, p := range pods {
			out = append(out, p.Name)
		}
		return out
	}
	check := func(step string, cached []*corev1.Pod, want []string, wantExpired int) {
		t.Helper()
		if _, _, expired := e.observe(key, cached); expired != wantExpired {
			t.Errorf("%s: %d expired, want %d", step, expired, wantExpired)
		}
		if diff := cmp.Diff(want, names(e.withoutRelabelled(key, cached))); diff != "" {
			t.Errorf("%s: Pods to relabel (-want +got):\n%s", step, diff)
		}
	}

	check("nothing sent", []*corev1.Pod{pod("a", "1"), pod("b", "1")}, []string{"a", "b"}, 0)
	e.relabelSent(key, pod("a", "1"))
	e.relabelSent(key, pod("b", "1"))
	check("sent, the cache not there yet", []*corev1.Pod{pod("a", "1"), pod("b", "1")}, nil, 0)
	check("the cache has a's new version", []*corev1.Pod{pod("a", "2"), pod("b", "1")}, []string{"a"}, 0)
	check("once the cache has moved on, the Pod is no longer tracked, whatever its version",
		[]*corev1.Pod{pod("a", "1"), pod("b", "1")}, []string{"a"}, 0)
	now = now.Add(2 * time.Minute)
	check("an unconfirmed relabel expires instead of stalling the Pod, and is counted", []*corev1.Pod{pod("b", "1")}, []string{"b"}, 1)
	e.relabelSent(key, pod("c", "1"))
	check("a Pod gone from the cache is forgotten", nil, nil, 0)
	check("… and not relabelled when it is back", []*corev1.Pod{pod("c", "1")}, []string{"c"}, 0)
}

func TestRefillClock(t *testing.T) {
	key := types.NamespacedName{Namespace: "ns", Name: "demo"}
	c := newRefillClock()
	t0 := time.Unix(1_000_000, 0)
	for i := range 3 {
		c.claimed(key, claim{pod: "p", agent: "a", at: t0.Add(time.Duration(i) * time.Second)})
	}
	if got := c.replaced(key, 2); len(got) != 2 || !got[0].at.Equal(t0) || !got[1].at.Equal(t0.Add(time.Second)) {
		t.Errorf("first two replacements answer the oldest claims, got %v", got)
	}
	if got := c.replaced(key, 5); len(got) != 1 {
		t.Errorf("more creations than claims answer only the claims left, got %v", got)
	}
	if got := c.replaced(key, 1); len(got) != 0 {
		t.Errorf("creations with no claim answer nothing, got %v", got)
	}
}
