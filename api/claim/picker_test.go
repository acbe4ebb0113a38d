package claim

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	. "github.com/onsi/gomega/gstruct"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
	"github.com/sandboxset/warmpool/test/kubelet"
)

var _ = Describe("Picker", func() {
	startPicker := func(ctx context.Context, sandboxSet string) *Picker {
		GinkgoHelper()
		p, err := agent.NewPicker(ctx, ns, sandboxSet)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(p.Stop)
		return p
	}

	It("takes a warm sandbox in one write", func(ctx SpecContext) {
		newPool(ctx, ns, "demo", 2, true)
		p := startPicker(ctx, "demo")
		sbx, err := p.Claim(ctx, "agent-1", ClaimOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(*sbx).To(MatchFields(IgnoreExtras, Fields{
			"Namespace": Equal(ns), "SandboxSet": Equal("demo"), "Agent": Equal("agent-1"),
			"IP": Equal("10.0.0.1"), "Cold": BeFalse(), "Attempts": Equal(1), "ClaimedAt": Not(BeZero()),
		}))
		Expect(storedPod(ctx, ns, sbx.Name).Labels).To(And(
			HaveKeyWithValue(agentsv1alpha1.LabelState, string(agentsv1alpha1.StateClaimed)),
			HaveKeyWithValue(agentsv1alpha1.LabelClaimedBy, "agent-1"),
		))

		_, err = p.Claim(ctx, "Agent 1", ClaimOptions{})
		Expect(err).To(MatchError(`agent id "Agent 1" is not usable as a label value: use at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit, e.g. agent-1`))
	})

	It("gives each of 10 sandboxes to exactly one agent, racing through two Pickers and plain Claims", func(ctx SpecContext) {
		newPool(ctx, ns, "demo", 10, true)
		shared, other := startPicker(ctx, "demo"), startPicker(ctx, "demo")
		viaShared := func(id string) (*Sandbox, error) { return shared.Claim(ctx, id, ClaimOptions{}) }
		viaOther := func(id string) (*Sandbox, error) { return other.Claim(ctx, id, ClaimOptions{}) }
		plain := func(id string) (*Sandbox, error) { return agent.Claim(ctx, ns, "demo", id, ClaimOptions{}) }
		claims := slices.Concat(slices.Repeat([]claimer{viaShared}, 30), slices.Repeat([]claimer{viaOther}, 10), slices.Repeat([]claimer{plain}, 10))
		Expect(raceClaims(ctx, ns, claims)).To(HaveLen(10))
	})

	It("sends no two claims for one sandbox from one Picker", func(ctx SpecContext) {
		newPool(ctx, ns, "demo", 10, true)
		p := startPicker(ctx, "demo")
		var mu sync.Mutex
		var attempts []int
		claim := func(id string) (*Sandbox, error) {
			sbx, err := p.Claim(ctx, id, ClaimOptions{})
			if err == nil {
				mu.Lock()
				defer mu.Unlock()
				attempts = append(attempts, sbx.Attempts)
			}
			return sbx, err
		}
		Expect(raceClaims(ctx, ns, slices.Repeat([]claimer{claim}, 10))).To(HaveLen(10))
		Expect(attempts).To(And(HaveLen(10), HaveEach(1)), "a second claim for a sandbox would have lost its race")
	})

	It("waits for a sandbox to become available, and says when none did", func(ctx SpecContext) {
		newPool(ctx, ns, "demo", 1, false)
		p := startPicker(ctx, "demo")
		_, err := p.Claim(ctx, "agent-1", ClaimOptions{})
		Expect(err).To(MatchError(ErrPoolEmpty))
		Expect(err).To(MatchError(fmt.Sprintf("SandboxSet %s/demo has no available sandbox (1 creating); retry, wait for one (--wait 30s), or claim cold (--cold-if-empty)", ns)))
		_, err = p.Claim(ctx, "agent-1", ClaimOptions{Wait: 300 * time.Millisecond})
		Expect(err).To(MatchError(fmt.Sprintf("SandboxSet %s/demo had no available sandbox after waiting 300ms (1 creating); wait longer, or claim cold (--cold-if-empty)", ns)))

		type result struct {
			sbx *Sandbox
			err error
		}
		done := make(chan result, 1)
		go func() {
			sbx, err := p.Claim(ctx, "agent-2", ClaimOptions{Wait: timeout})
			done <- result{sbx, err}
		}()
		Consistently(done, holdFor).ShouldNot(Receive(), "nothing to claim while the sandbox is creating")

		By("playing kubelet: the sandbox turns Ready")
		pod := poolPods(ctx, Default, ns, "demo", agentsv1alpha1.StateCreating)[0]
		Expect(kubelet.SetReady(ctx, admin, &pod, true)).To(Succeed())
		var r result
		Eventually(done, timeout).Should(Receive(&r))
		Expect(r.err).NotTo(HaveOccurred())
		Expect(r.sbx.Name).To(Equal(pod.Name))
		Expect(r.sbx.Agent).To(Equal("agent-2"))
	})

	It("does not claim a sandbox another agent took first", func(ctx SpecContext) {
		newPool(ctx, ns, "demo", 3, true)
		p := startPicker(ctx, "demo")
		taken, err := agent.Claim(ctx, ns, "demo", "other", ClaimOptions{})
		Expect(err).NotTo(HaveOccurred())

		By("claiming through a Picker that may not have seen it go")
		won := map[string]string{}
		for i := range 2 {
			sbx, err := p.Claim(ctx, fmt.Sprintf("agent-%d", i), ClaimOptions{})
			Expect(err).NotTo(HaveOccurred())
			Expect(won).NotTo(HaveKey(sbx.Name))
			won[sbx.Name] = sbx.Agent
		}
		Expect(won).NotTo(HaveKey(taken.Name))
		_, err = p.Claim(ctx, "agent-2", ClaimOptions{})
		Expect(err).To(MatchError(ErrPoolEmpty))
		Expect(storedPod(ctx, ns, taken.Name).Labels).To(HaveKeyWithValue(agentsv1alpha1.LabelClaimedBy, "other"))
	})

	It("never offers a sandbox it won again", func(ctx SpecContext) {
		newPool(ctx, ns, "demo", 3, true)
		p := startPicker(ctx, "demo")
		won := map[string]bool{}
		for i := range 3 {
			By("touching the available Pods, so that events showing them available may arrive after the claim")
			for _, pod := range poolPods(ctx, Default, ns, "demo", agentsv1alpha1.StateAvailable) {
				patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{"touched": fmt.Sprint(i)}}})
				Expect(err).NotTo(HaveOccurred())
				Expect(admin.Patch(ctx, &pod, client.RawPatch(types.MergePatchType, patch))).To(Succeed())
			}
			sbx, err := p.Claim(ctx, fmt.Sprintf("agent-%d", i), ClaimOptions{})
			Expect(err).NotTo(HaveOccurred())
			Expect(won).NotTo(HaveKey(sbx.Name))
			won[sbx.Name] = true
		}
		// A won name offered again would be tried, and lost: ErrLostRaces.
		_, err := p.Claim(ctx, "agent-3", ClaimOptions{MaxAttempts: 1})
		Expect(err).To(MatchError(ErrPoolEmpty))

		By("forgetting the won names once the watch shows them gone")
		Eventually(func(g Gomega) {
			names, taken := pickerState(p.pool)
			g.Expect(names).To(BeEmpty())
			g.Expect(taken).To(BeEmpty())
		}, timeout, interval).Should(Succeed())
		Consistently(func() []string { names, _ := pickerState(p.pool); return names }, holdFor, interval).Should(BeEmpty())
	})

	It("says when there is no such SandboxSet, and stops with Stop or its context", func(ctx SpecContext) {
		p := startPicker(ctx, "nope")
		_, err := p.Claim(ctx, "agent-1", ClaimOptions{})
		Expect(err).To(MatchError(ErrNoSandboxSet))
		Expect(err).To(MatchError(fmt.Sprintf("no SandboxSet nope in namespace %s", ns)))

		p.Stop()
		Expect(p.w.done).To(BeClosed(), "Stop returns once the informer has ended")
		_, err = p.Claim(ctx, "agent-1", ClaimOptions{})
		Expect(err).To(MatchError(fmt.Sprintf("the Picker of SandboxSet %s/nope is stopped", ns)))

		pickerCtx, cancel := context.WithCancel(ctx)
		p = startPicker(pickerCtx, "nope")
		cancel()
		Eventually(p.w.done, timeout).Should(BeClosed(), "the informer ends with the Picker's context")

		_, err = agent.NewPicker(pickerCtx, ns, "nope")
		Expect(err).To(MatchError(context.Canceled))
		Expect(err.Error()).To(HavePrefix("watching SandboxSet %s/nope for available sandboxes: ", ns))
	})

	It("says which right an agent without the agent Role lacks, instead of retrying", func(ctx SpecContext) {
		startCtx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		_, err := userClient("stranger").NewPicker(startCtx, ns, "demo")
		Expect(err).To(MatchError(ErrForbidden))
		Expect(err.Error()).To(And(
			MatchRegexp(`^not allowed to (list|watch) pods in namespace %s: `, ns),
			HaveSuffix("an agent needs the Role in config/rbac/agent_role.yaml"),
		))
	})
})

var _ = Describe("NamespacePicker", func() {
	startPicker := func(ctx context.Context) *NamespacePicker {
		GinkgoHelper()
		p, err := agent.NewNamespacePicker(ctx, ns)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(p.Stop)
		return p
	}

	It("claims from each pool of the namespace through one watch, and waits on a pool it has not seen", func(ctx SpecContext) {
		newPool(ctx, ns, "demo", 2, true)
		newPool(ctx, ns, "other", 1, false)
		p := startPicker(ctx)
		sbx, err := p.Claim(ctx, "demo", "agent-1", ClaimOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(*sbx).To(MatchFields(IgnoreExtras, Fields{"SandboxSet": Equal("demo"), "Agent": Equal("agent-1"), "Attempts": Equal(1)}))

		_, err = p.Claim(ctx, "other", "agent-2", ClaimOptions{})
		Expect(err).To(MatchError(fmt.Sprintf("SandboxSet %s/other has no available sandbox (1 creating); retry, wait for one (--wait 30s), or claim cold (--cold-if-empty)", ns)))
		done := make(chan *Sandbox, 1)
		go func() {
			defer GinkgoRecover()
			sbx, err := p.Claim(ctx, "other", "agent-2", ClaimOptions{Wait: timeout})
			Expect(err).NotTo(HaveOccurred())
			done <- sbx
		}()
		Consistently(done, holdFor).ShouldNot(Receive(), "demo's sandbox is not other's")

		By("playing kubelet: other's sandbox turns Ready")
		pod := poolPods(ctx, Default, ns, "other", agentsv1alpha1.StateCreating)[0]
		Expect(kubelet.SetReady(ctx, admin, &pod, true)).To(Succeed())
		Eventually(done, timeout).Should(Receive(PointTo(MatchFields(IgnoreExtras, Fields{
			"Name": Equal(pod.Name), "SandboxSet": Equal("other"), "Agent": Equal("agent-2")}))))

		_, err = p.Claim(ctx, "nope", "agent-3", ClaimOptions{})
		Expect(err).To(MatchError(ErrNoSandboxSet))

		p.Stop()
		_, err = p.Claim(ctx, "demo", "agent-4", ClaimOptions{})
		Expect(err).To(MatchError(fmt.Sprintf("the Picker of SandboxSet %s/demo is stopped", ns)))
	})

	It("gives each sandbox of two pools to exactly one agent, racing with a Picker of one of them", func(ctx SpecContext) {
		newPool(ctx, ns, "demo", 6, true)
		newPool(ctx, ns, "other", 4, true)
		shared := startPicker(ctx)
		p, err := agent.NewPicker(ctx, ns, "demo")
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(p.Stop)
		// inPool fails a claim that won another pool's sandbox.
		inPool := func(pool string, claim claimer) claimer {
			return func(id string) (*Sandbox, error) {
				sbx, err := claim(id)
				if err == nil && sbx.SandboxSet != pool {
					return nil, fmt.Errorf("a claim on %s won %s of %s", pool, sbx.Name, sbx.SandboxSet)
				}
				return sbx, err
			}
		}
		var claims []claimer
		for range 10 {
			claims = append(claims,
				inPool("demo", func(id string) (*Sandbox, error) { return shared.Claim(ctx, "demo", id, ClaimOptions{}) }),
				inPool("other", func(id string) (*Sandbox, error) { return shared.Claim(ctx, "other", id, ClaimOptions{}) }),
				inPool("demo", func(id string) (*Sandbox, error) { return p.Claim(ctx, id, ClaimOptions{}) }))
		}
		Expect(raceClaims(ctx, ns, claims)).To(HaveLen(10))
	})

	It("says which right an agent without the agent Role lacks, instead of retrying", func(ctx SpecContext) {
		startCtx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		_, err := userClient("stranger").NewNamespacePicker(startCtx, ns)
		Expect(err).To(MatchError(ErrForbidden))
		Expect(err.Error()).To(And(
			MatchRegexp(`^not allowed to (list|watch) pods in namespace %s: `, ns),
			HaveSuffix("an agent needs the Role in config/rbac/agent_role.yaml"),
		))
	})
})

// pickerState returns the Picker's claimable and taken names, sorted, and
// checks that its index matches its names.
func pickerState(p *available) (names, taken []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, name := range p.names {
		if p.index[name] != i || len(p.index) != len(p.names) {
			panic(fmt.Sprintf("the index says %s is at %d, names have it at %d, of %d", name, p.index[name], i, len(p.names)))
		}
	}
	return slices.Sorted(slices.Values(p.names)), slices.Sorted(maps.Keys(p.taken))
}

// TestPickerEvents plays the informer to the Picker's handlers, in orders the
// API server cannot be made to produce on demand.
func TestPickerEvents(t *testing.T) {
	np := &NamespacePicker{pools: map[string]*available{}}
	np.w = newPodWatch(nil, "ns", nil, np.pool)
	np.w.store = cache.NewStore(cache.MetaNamespaceKeyFunc)
	p := np.pool("demo")
	podOf := func(pool, name string, edit func(*metav1.PartialObjectMetadata)) *metav1.PartialObjectMetadata {
		m := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, Labels: map[string]string{
			agentsv1alpha1.LabelSandboxSet: pool, agentsv1alpha1.LabelState: string(agentsv1alpha1.StateAvailable)}}}
		if edit != nil {
			edit(m)
		}
		return m
	}
	pod := func(name string, edit func(*metav1.PartialObjectMetadata)) *metav1.PartialObjectMetadata {
		return podOf("demo", name, edit)
	}
	// Like the informer, each event updates the store before the handler.
	update := func(m *metav1.PartialObjectMetadata) {
		if err := np.w.store.Update(m); err != nil {
			t.Fatal(err)
		}
		np.w.observe(m)
	}
	remove := func(m *metav1.PartialObjectMetadata, obj any) {
		if err := np.w.store.Delete(m); err != nil {
			t.Fatal(err)
		}
		np.w.forget(obj)
	}
	take := func() string {
		t.Helper()
		name, _ := p.take()
		if name == "" {
			t.Fatal("nothing to take")
		}
		return name
	}
	check := func(step string, p *available, wantNames, wantTaken []string) {
		t.Helper()
		names, taken := pickerState(p)
		if diff := cmp.Diff(wantNames, names); diff != "" {
			t.Errorf("%s: names (-want +got):\n%s", step, diff)
		}
		if diff := cmp.Diff(wantTaken, taken); diff != "" {
			t.Errorf("%s: taken (-want +got):\n%s", step, diff)
		}
	}

	update(pod("a", nil))
	update(pod("b", nil))
	update(podOf("other", "x", nil))
	check("listed", p, []string{"a", "b"}, nil)
	check("another pool's Pod goes to its own set", np.pool("other"), []string{"x"}, nil)
	remove(podOf("other", "x", nil), cache.DeletedFinalStateUnknown{Key: "ns/x", Obj: podOf("other", "x", nil)})
	check("a tombstone leaves its own pool's set", np.pool("other"), nil, nil)

	won := take()
	left := map[string]string{"a": "b", "b": "a"}[won]
	check("taken", p, []string{left}, []string{won})
	update(pod(won, nil))
	check("an update sent before the claim does not offer it again", p, []string{left}, []string{won})
	remove(pod(won, nil), pod(won, nil))
	check("its Delete ends the tracking", p, []string{left}, nil)

	take()
	p.release(left)
	check("released while the informer shows it available: back", p, []string{left}, nil)
	take()
	remove(pod(left, nil), cache.DeletedFinalStateUnknown{Key: "ns/" + left, Obj: pod(left, nil)})
	p.release(left)
	check("released after a relist found it gone: not back", p, nil, nil)

	_, arrived := p.take()
	update(pod("c", nil))
	select {
	case <-arrived:
	default:
		t.Error("an arrival does not wake the Claims waiting")
	}
	take()
	update(pod("c", func(m *metav1.PartialObjectMetadata) { m.Labels[agentsv1alpha1.LabelClaimedBy] = "agent-1" }))
	check("an update showing it claimed ends the tracking", p, nil, nil)
	update(pod("d", nil))
	update(pod("d", func(m *metav1.PartialObjectMetadata) { m.DeletionTimestamp = &metav1.Time{} }))
	check("a terminating Pod leaves the set", p, nil, nil)
}
