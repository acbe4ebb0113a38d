package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sandboxset/warmpool/api/claim"
	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
	"github.com/sandboxset/warmpool/test/podtrack"
)

// Names of the two systems, as they appear in tables and JSON.
const (
	sysSandboxSet = "sandboxset"
	sysReplicaSet = "replicaset"
)

// maxAttempts bounds a claim's races in both systems alike: the claim
// package's default.
const maxAttempts = claim.DefaultMaxAttempts

// claimResult is one claim as the agent saw it.
type claimResult struct {
	id       string // the holder identity the claim wrote; unique per claim
	pod      string // the Pod won; empty on failure
	latency  time.Duration
	empty    bool // nothing was available: not served warm
	lost     bool // lost every race it tried
	attempts int  // claim writes sent; 0 when unknown (a failed SandboxSet claim)
	err      error
}

// claimedPod is a Pod held by an agent, as stored.
type claimedPod struct {
	holder   string
	revision string // the SandboxSet revision label; empty for ReplicaSet Pods
}

// system is a warm pool implementation under test, with one pool in a
// namespace of its own.
type system interface {
	name() string
	namespace() string
	// controller is the process that keeps the pool full, for its cost.
	controller() string
	tracker() *tracker
	creations() *podtrack.Creations
	scale(ctx context.Context, replicas int) error
	// claim takes a warm Pod now or reports that none was available.
	claim(ctx context.Context, id string) claimResult
	// patchOnly sends a claim's write alone, on a Pod known to be warm.
	patchOnly(ctx context.Context, pod, id string) error
	// pick is a claim's read alone: the list it picks a Pod from.
	pick(ctx context.Context) error
	// touch changes an unrelated label of a warm Pod: a write on a pool Pod
	// that claims nothing, so it shows what the admission path costs alone.
	touch(ctx context.Context, pod, value string) error
	// claimed lists the Pods agents hold, by name.
	claimed(ctx context.Context) (map[string]claimedPod, error)
	// deleteClaimed releases every held Pod.
	deleteClaimed(ctx context.Context) error
	close()
}

// env is what both systems and the scenarios share: clients that read
// straight from the API server and are not throttled client-side, so the
// benchmark measures the cluster, not client-go's rate limiter.
type env struct {
	cfg  *rest.Config
	cs   kubernetes.Interface
	c    client.WithWatch
	p    params
	repo string
}

// sandboxTemplate is the Pod both systems keep warm.
func sandboxTemplate() corev1.PodSpec {
	return corev1.PodSpec{
		Containers: []corev1.Container{{Name: "sandbox", Image: "nginx:alpine"}},
		// The SandboxSet webhook defaults this; the ReplicaSet gets it too
		// so that both Pods are the same size.
		AutomountServiceAccountToken: ptr.To(false),
	}
}

func createNamespace(ctx context.Context, cs kubernetes.Interface, prefix string) (string, error) {
	ns, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: prefix},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("creating a namespace %s*: %w", prefix, err)
	}
	return ns.Name, nil
}

// base holds what both systems have alike.
type base struct {
	*env
	ns, pool string
	t        *tracker
	pt       *podtrack.Creations
	// agent and agentCS are the agents' clients (-agents-as): every claim,
	// and the list a claim picks from, goes through them.
	agent   client.WithWatch
	agentCS kubernetes.Interface
}

func (b *base) namespace() string              { return b.ns }
func (b *base) tracker() *tracker              { return b.t }
func (b *base) creations() *podtrack.Creations { return b.pt }
func (b *base) close()                         { b.t.close(); b.pt.Stop() }
func (b *base) touch(ctx context.Context, pod, value string) error {
	patch := fmt.Appendf(nil, `{"metadata":{"labels":{"bench-touch":%q}}}`, value)
	if _, err := b.cs.CoreV1().Pods(b.ns).Patch(ctx, pod, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("patching Pod %s/%s: %w", b.ns, pod, err)
	}
	return nil
}

func (b *base) track(ctx context.Context, name, selector string, classify func(*corev1.Pod) podClass) error {
	var err error
	if b.t, err = newTracker(ctx, b.cs, name, b.ns, selector, classify); err != nil {
		return err
	}
	if b.pt, err = podtrack.Count(ctx, b.cfg, b.ns); err != nil {
		b.t.close()
		return fmt.Errorf("%s: counting Pod creations: %w", name, err)
	}
	return nil
}

// --- SandboxSet -----------------------------------------------------------

type sandboxSetSystem struct {
	base
	claims *claim.Client
	// picker, with -claim picker, is what the agents claim through: one
	// watch of the pool shared by all of them, as in an agent gateway.
	picker *claim.Picker
}

func newSandboxSetSystem(ctx context.Context, e *env) (*sandboxSetSystem, error) {
	ns, err := createNamespace(ctx, e.cs, "bench-sbs-")
	if err != nil {
		return nil, err
	}
	s := &sandboxSetSystem{base: base{env: e, ns: ns, pool: "pool"}}
	if s.agent, s.agentCS, err = agentClients(ctx, e, ns); err != nil {
		return nil, err
	}
	s.claims = claim.New(s.agent)
	sbs := &agentsv1alpha1.SandboxSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: s.pool},
		Spec: agentsv1alpha1.SandboxSetSpec{
			Replicas:           ptr.To[int32](0),
			PersistentContents: []agentsv1alpha1.PersistentContent{agentsv1alpha1.PersistentContentIP},
			Template:           corev1.PodTemplateSpec{Spec: sandboxTemplate()},
		},
	}
	if err := e.c.Create(ctx, sbs); err != nil {
		return nil, fmt.Errorf("creating SandboxSet %s/%s: %w", ns, s.pool, err)
	}
	if err := s.track(ctx, sysSandboxSet, agentsv1alpha1.LabelSandboxSet+"="+s.pool, classifySandbox); err != nil {
		return nil, err
	}
	if e.p.Claim == claimPicker {
		if s.picker, err = s.claims.NewPicker(ctx, ns, s.pool); err != nil {
			s.base.close()
			return nil, fmt.Errorf("starting a claim picker on %s/%s: %w", ns, s.pool, err)
		}
	}
	return s, nil
}

func (s *sandboxSetSystem) close() {
	if s.picker != nil {
		s.picker.Stop()
	}
	s.base.close()
}

// classifySandbox reads the pool labels, which are what agents claim by:
// a Ready Pod is not claimable until the controller marks it available.
func classifySandbox(pod *corev1.Pod) podClass {
	switch {
	case agentsv1alpha1.IsClaimed(pod):
		return classClaimed
	case pod.Labels[agentsv1alpha1.LabelState] == string(agentsv1alpha1.StateAvailable):
		return classAvailable
	}
	return classCreating
}

func (s *sandboxSetSystem) name() string       { return sysSandboxSet }
func (s *sandboxSetSystem) controller() string { return procManager }

func (s *sandboxSetSystem) scale(ctx context.Context, replicas int) error {
	sbs := &agentsv1alpha1.SandboxSet{ObjectMeta: metav1.ObjectMeta{Namespace: s.ns, Name: s.pool}}
	patch := fmt.Appendf(nil, `{"spec":{"replicas":%d}}`, replicas)
	if err := s.c.Patch(ctx, sbs, client.RawPatch(types.MergePatchType, patch)); err != nil {
		return fmt.Errorf("scaling SandboxSet %s/%s to %d: %w", s.ns, s.pool, replicas, err)
	}
	return nil
}

func (s *sandboxSetSystem) claim(ctx context.Context, id string) claimResult {
	start := time.Now()
	opts := claim.ClaimOptions{MaxAttempts: maxAttempts}
	var sbx *claim.Sandbox
	var err error
	if s.picker != nil {
		sbx, err = s.picker.Claim(ctx, id, opts)
	} else {
		sbx, err = s.claims.Claim(ctx, s.ns, s.pool, id, opts)
	}
	return sandboxClaimResult(id, start, sbx, err)
}

// sandboxClaimResult records a claim through the claim package, started at
// start: an empty pool and lost races are outcomes, not errors.
func sandboxClaimResult(id string, start time.Time, sbx *claim.Sandbox, err error) claimResult {
	r := claimResult{id: id, latency: time.Since(start), err: err}
	switch {
	case err == nil:
		r.pod, r.attempts = sbx.Name, sbx.Attempts
	case errors.Is(err, claim.ErrPoolEmpty):
		r.empty, r.err = true, nil
	case errors.Is(err, claim.ErrLostRaces):
		r.lost, r.err = true, nil
	}
	return r
}

// pick lists what the claim package lists: the available Pods' metadata.
func (s *sandboxSetSystem) pick(ctx context.Context) error {
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("PodList"))
	if err := s.agent.List(ctx, list, client.InNamespace(s.ns), client.MatchingLabels{
		agentsv1alpha1.LabelSandboxSet: s.pool, agentsv1alpha1.LabelState: string(agentsv1alpha1.StateAvailable),
	}); err != nil {
		return fmt.Errorf("listing the available sandboxes of %s/%s: %w", s.ns, s.pool, err)
	}
	return nil
}

// patchOnly is the claim package's write, without its list: the holder
// label, on condition that the Pod is still available.
func (s *sandboxSetSystem) patchOnly(ctx context.Context, pod, id string) error {
	patch, err := json.Marshal([]map[string]string{
		{"op": "test", "path": "/metadata/labels/agents.kruise.io~1state", "value": string(agentsv1alpha1.StateAvailable)},
		{"op": "add", "path": "/metadata/labels/agents.kruise.io~1claimed-by", "value": id},
	})
	if err != nil {
		return fmt.Errorf("encoding the claim of %s: %w", pod, err)
	}
	if _, err := s.agentCS.CoreV1().Pods(s.ns).Patch(ctx, pod, types.JSONPatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("claiming sandbox %s/%s: %w", s.ns, pod, err)
	}
	return nil
}

func (s *sandboxSetSystem) claimed(ctx context.Context) (map[string]claimedPod, error) {
	list, err := s.cs.CoreV1().Pods(s.ns).List(ctx, metav1.ListOptions{LabelSelector: agentsv1alpha1.LabelSandboxSet + "=" + s.pool})
	if err != nil {
		return nil, fmt.Errorf("listing the sandboxes of %s/%s: %w", s.ns, s.pool, err)
	}
	out := map[string]claimedPod{}
	for _, pod := range list.Items {
		if agentsv1alpha1.IsClaimed(&pod) {
			out[pod.Name] = claimedPod{holder: pod.Labels[agentsv1alpha1.LabelClaimedBy], revision: pod.Labels[agentsv1alpha1.LabelRevision]}
		}
	}
	return out, nil
}

func (s *sandboxSetSystem) deleteClaimed(ctx context.Context) error {
	sel := agentsv1alpha1.LabelSandboxSet + "=" + s.pool + "," + agentsv1alpha1.LabelClaimedBy
	if err := s.cs.CoreV1().Pods(s.ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: sel}); err != nil {
		return fmt.Errorf("releasing the claimed sandboxes of %s/%s: %w", s.ns, s.pool, err)
	}
	return nil
}

// changeTemplate changes the template's annotation, which makes a new
// revision that the controller rolls out. It returns the generation whose
// status means the rollout is observed, and the revision it left.
func (s *sandboxSetSystem) changeTemplate(ctx context.Context, value string) (generation int64, oldRevision string, err error) {
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		sbs := &agentsv1alpha1.SandboxSet{}
		if err := s.c.Get(ctx, client.ObjectKey{Namespace: s.ns, Name: s.pool}, sbs); err != nil {
			return err
		}
		oldRevision = sbs.Status.UpdateRevision
		if sbs.Spec.Template.Annotations == nil {
			sbs.Spec.Template.Annotations = map[string]string{}
		}
		sbs.Spec.Template.Annotations["bench.sandboxset.io/template"] = value
		if err := s.c.Update(ctx, sbs); err != nil {
			return err
		}
		generation = sbs.Generation
		return nil
	})
	if err != nil {
		return 0, "", fmt.Errorf("changing the template of SandboxSet %s/%s: %w", s.ns, s.pool, err)
	}
	return generation, oldRevision, nil
}

// --- ReplicaSet -----------------------------------------------------------

// The ReplicaSet pool's labels: a claim moves a Pod out of the selector by
// changing pool=warm to pool=claimed-<agent>, and the ReplicaSet replaces it.
const (
	rsPoolLabel   = "pool"
	rsWarm        = "warm"
	rsClaimPrefix = "claimed-"
)

type replicaSetSystem struct {
	base
	shared *sharedPicker // with -claim picker: the pool's warm Pods from the tracker's watch
}

func newReplicaSetSystem(ctx context.Context, e *env) (*replicaSetSystem, error) {
	ns, err := createNamespace(ctx, e.cs, "bench-rs-")
	if err != nil {
		return nil, err
	}
	r := &replicaSetSystem{base: base{env: e, ns: ns, pool: "pool"}}
	if r.agent, r.agentCS, err = agentClients(ctx, e, ns); err != nil {
		return nil, err
	}
	labels := map[string]string{"app": r.pool, rsPoolLabel: rsWarm}
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: r.pool},
		Spec: appsv1.ReplicaSetSpec{
			Replicas: ptr.To[int32](0),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: sandboxTemplate()},
		},
	}
	if _, err := e.cs.AppsV1().ReplicaSets(ns).Create(ctx, rs, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("creating ReplicaSet %s/%s: %w", ns, r.pool, err)
	}
	if err := r.track(ctx, sysReplicaSet, "app="+r.pool, classifyReplica); err != nil {
		return nil, err
	}
	if e.p.Claim == claimPicker {
		r.shared = newSharedPicker(r.t)
	}
	return r, nil
}

func classifyReplica(pod *corev1.Pod) podClass {
	switch {
	case pod.Labels[rsPoolLabel] != rsWarm:
		return classClaimed
	case agentsv1alpha1.IsPodReady(pod):
		return classAvailable
	}
	return classCreating
}

func (r *replicaSetSystem) name() string       { return sysReplicaSet }
func (r *replicaSetSystem) controller() string { return procKCM }

func (r *replicaSetSystem) scale(ctx context.Context, replicas int) error {
	patch := fmt.Appendf(nil, `{"spec":{"replicas":%d}}`, replicas)
	if _, err := r.cs.AppsV1().ReplicaSets(r.ns).Patch(ctx, r.pool, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("scaling ReplicaSet %s/%s to %d: %w", r.ns, r.pool, replicas, err)
	}
	return nil
}

// claim is the hand-built warm pool's claim: pick a Ready warm Pod at
// random and relabel it, at most maxAttempts writes, like the claim package.
// With -claim picker the agents pick from one shared watch of the pool, as
// the SandboxSet's agents do through claim.Picker; with -claim list each try
// lists the warm Pods (whole Pods, since readiness is only in the status).
func (r *replicaSetSystem) claim(ctx context.Context, id string) (res claimResult) {
	start := time.Now()
	res.id = id
	defer func() { res.latency = time.Since(start) }()
	if r.shared != nil {
		return r.claimShared(ctx, id, res)
	}
	for res.attempts < maxAttempts {
		list, err := r.agentCS.CoreV1().Pods(r.ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + r.pool + "," + rsPoolLabel + "=" + rsWarm})
		if err != nil {
			res.err = fmt.Errorf("listing the warm Pods of %s/%s: %w", r.ns, r.pool, err)
			return res
		}
		var ready []string
		for i := range list.Items {
			if pod := &list.Items[i]; pod.DeletionTimestamp == nil && agentsv1alpha1.IsPodReady(pod) {
				ready = append(ready, pod.Name)
			}
		}
		if len(ready) == 0 {
			res.empty = true
			return res
		}
		res.attempts++
		pod := ready[rand.IntN(len(ready))]
		err = r.patchOnly(ctx, pod, id)
		if err == nil {
			res.pod = pod
			return res
		}
		if !lostReplicaRace(err) {
			res.err = err
			return res
		}
	}
	res.lost = true
	return res
}

// claimShared claims through the shared picker. A lost race keeps the Pod
// taken: it is someone else's, and the watch will show it leaving.
func (r *replicaSetSystem) claimShared(ctx context.Context, id string, res claimResult) claimResult {
	for res.attempts < maxAttempts {
		pod := r.shared.take()
		if pod == "" {
			res.empty = true
			return res
		}
		res.attempts++
		err := r.patchOnly(ctx, pod, id)
		if err == nil {
			res.pod = pod
			return res
		}
		if !lostReplicaRace(err) {
			r.shared.release(pod)
			res.err = err
			return res
		}
	}
	res.lost = true
	return res
}

// pick lists what claim lists: the warm Pods, whole.
func (r *replicaSetSystem) pick(ctx context.Context) error {
	if _, err := r.agentCS.CoreV1().Pods(r.ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + r.pool + "," + rsPoolLabel + "=" + rsWarm}); err != nil {
		return fmt.Errorf("listing the warm Pods of %s/%s: %w", r.ns, r.pool, err)
	}
	return nil
}

// patchOnly relabels one Pod with a JSON patch whose test op makes the API
// server check, atomically with the write, that nobody relabelled it first.
func (r *replicaSetSystem) patchOnly(ctx context.Context, pod, id string) error {
	patch, err := json.Marshal([]map[string]string{
		{"op": "test", "path": "/metadata/labels/" + rsPoolLabel, "value": rsWarm},
		{"op": "replace", "path": "/metadata/labels/" + rsPoolLabel, "value": rsClaimPrefix + id},
	})
	if err != nil {
		return fmt.Errorf("encoding the claim of %s: %w", pod, err)
	}
	if _, err := r.agentCS.CoreV1().Pods(r.ns).Patch(ctx, pod, types.JSONPatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("claiming Pod %s/%s: %w", r.ns, pod, err)
	}
	return nil
}

// lostReplicaRace: a failed test op (422), a conflict, or a Pod gone.
func lostReplicaRace(err error) bool {
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return false
	}
	switch status.Status().Code {
	case http.StatusUnprocessableEntity, http.StatusConflict, http.StatusNotFound:
		return true
	}
	return false
}

// sharedPicker hands each warm Pod the tracker's watch shows to at most
// one claim at a time, as claim.Picker does for a SandboxSet.
type sharedPicker struct {
	t     *tracker
	mu    sync.Mutex
	taken map[string]bool // picked, and not yet seen leaving the warm Pods
}

func newSharedPicker(t *tracker) *sharedPicker {
	return &sharedPicker{t: t, taken: map[string]bool{}}
}

// take returns a random warm Pod no other claim holds, or "" if there is none.
func (p *sharedPicker) take() string {
	warm := p.t.availableNames()
	p.mu.Lock()
	defer p.mu.Unlock()
	stillWarm := make(map[string]bool, len(warm))
	var free []string
	for _, name := range warm {
		stillWarm[name] = true
		if !p.taken[name] {
			free = append(free, name)
		}
	}
	maps.DeleteFunc(p.taken, func(name string, _ bool) bool { return !stillWarm[name] })
	if len(free) == 0 {
		return ""
	}
	name := free[rand.IntN(len(free))]
	p.taken[name] = true
	return name
}

func (p *sharedPicker) release(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.taken, name)
}

func (r *replicaSetSystem) claimed(ctx context.Context) (map[string]claimedPod, error) {
	list, err := r.cs.CoreV1().Pods(r.ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + r.pool})
	if err != nil {
		return nil, fmt.Errorf("listing the Pods of %s/%s: %w", r.ns, r.pool, err)
	}
	out := map[string]claimedPod{}
	for _, pod := range list.Items {
		if holder, ok := strings.CutPrefix(pod.Labels[rsPoolLabel], rsClaimPrefix); ok {
			out[pod.Name] = claimedPod{holder: holder}
		}
	}
	return out, nil
}

func (r *replicaSetSystem) deleteClaimed(ctx context.Context) error {
	sel := "app=" + r.pool + "," + rsPoolLabel + "!=" + rsWarm
	if err := r.cs.CoreV1().Pods(r.ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: sel}); err != nil {
		return fmt.Errorf("deleting the claimed Pods of %s/%s: %w", r.ns, r.pool, err)
	}
	return nil
}
