// Package claim takes sandboxes from SandboxSet warm pools for agents, and
// gives them back. It speaks only the Pod-level contract (the pool labels and
// the claim webhook's answers), so an agent needs no more rights than the
// Role in config/rbac/agent_role.yaml, plus create on Pods for cold claims.
//
// Client.Claim lists the pool on every claim. A long-lived process that
// claims often should use a Picker (Client.NewPicker) instead: it watches the
// pool's available sandboxes, so a claim is one write. A process that claims
// from many pools should hold one NamespacePicker (Client.NewNamespacePicker),
// one watch for them all, since every watch of a namespace's Pods makes the
// controller's Pod writes there cost more. Both need list and watch on Pods,
// which that Role grants.
package claim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
)

// DefaultMaxAttempts bounds a Claim's races when ClaimOptions leaves it out.
const DefaultMaxAttempts = 5

// ClaimOptions tune one Claim. The zero value claims a warm sandbox now or
// fails.
type ClaimOptions struct {
	// Wait is how long to wait for a sandbox to become available when the
	// pool has none. The wait watches the pool, so it ends the moment one does.
	Wait time.Duration
	// ColdIfEmpty creates a sandbox from the pool's current template, already
	// claimed, when none is available (after Wait). It is opt-in: it needs
	// create on Pods, and the sandbox still has to start.
	ColdIfEmpty bool
	// MaxAttempts bounds the claims sent; each races other agents for one
	// sandbox. Zero means DefaultMaxAttempts.
	MaxAttempts int
	// TTL, if set, is how long the sandbox lives: the claim itself sets its
	// shutdown time to the claim's start plus TTL, and the operator deletes
	// it then unless it is renewed (Client.Renew). Zero leaves it to the
	// pool's claimLifetime.default, if any.
	TTL time.Duration
}

// Sandbox is a claimed sandbox Pod.
type Sandbox struct {
	Name       string `json:"name"`
	Namespace  string `json:"namespace"`
	SandboxSet string `json:"sandboxSet"`
	Agent      string `json:"agent"`
	// IP is empty until the Pod has one; a cold sandbox has none yet.
	IP string `json:"ip,omitempty"`
	// Cold says the sandbox was created for this claim, not taken warm:
	// it is not Ready yet.
	Cold      bool      `json:"cold"`
	ClaimedAt time.Time `json:"claimedAt,omitzero"`
	// ShutdownTime is when the operator deletes the sandbox; zero if never.
	ShutdownTime time.Time `json:"shutdownTime,omitzero"`
	// Attempts and Latency describe the Claim that won it; they are zero
	// for sandboxes listed by Claimed.
	Attempts int           `json:"attempts,omitempty"`
	Latency  time.Duration `json:"latencyNanoseconds,omitempty"`
}

// Client claims and releases sandboxes through the API server.
type Client struct {
	c client.WithWatch
}

// New returns a Client over c. c must read straight from the API server, not
// a cache: a claim decided on a stale list only loses more races. It needs
// watch for ClaimOptions.Wait.
func New(c client.WithWatch) *Client {
	return &Client{c: c}
}

// Claim takes an available sandbox of the SandboxSet for agent. It picks one
// at random, so that agents claiming at once rarely race for the same Pod,
// and claims it with one label patch that the claim webhook makes atomic. A
// lost race moves on to another sandbox, up to opts.MaxAttempts claims.
func (c *Client) Claim(ctx context.Context, namespace, sandboxSet, agent string, opts ClaimOptions) (*Sandbox, error) {
	return c.claim(ctx, namespace, sandboxSet, agent, opts, func(ctx context.Context, a *attempt) (*corev1.Pod, error) {
		return a.run(ctx)
	})
}

// claim is a Claim with the way of picking sandboxes left to run: listing
// (Client) or a watched set (Picker). Validation, results and errors are
// the same for both.
func (c *Client) claim(ctx context.Context, namespace, sandboxSet, agent string, opts ClaimOptions,
	run func(context.Context, *attempt) (*corev1.Pod, error)) (*Sandbox, error) {
	if err := checkAgentID(agent); err != nil {
		return nil, err
	}
	switch {
	case opts.MaxAttempts < 0:
		return nil, fmt.Errorf("MaxAttempts must be at least 1, not %d (0 means %d)", opts.MaxAttempts, DefaultMaxAttempts)
	case opts.Wait < 0:
		return nil, fmt.Errorf("a wait must not be negative, not %s", opts.Wait)
	case opts.TTL < 0:
		return nil, fmt.Errorf("a TTL must be positive, not %s", opts.TTL)
	}
	if opts.MaxAttempts == 0 {
		opts.MaxAttempts = DefaultMaxAttempts
	}
	a := &attempt{Client: c, namespace: namespace, sandboxSet: sandboxSet, agent: agent, opts: opts, start: time.Now()}
	pod, err := run(ctx, a)
	if err != nil {
		return nil, err
	}
	sbx := sandboxOf(pod)
	sbx.Cold, sbx.Attempts, sbx.Latency = a.cold, a.claims, time.Since(a.start)
	return &sbx, nil
}

// checkAgentID refuses an agent id that cannot be the claimed-by label.
func checkAgentID(agent string) error {
	if agent == "" {
		return errors.New("an agent id is required: it becomes the sandbox's claimed-by label")
	}
	if len(validation.IsValidLabelValue(agent)) > 0 {
		return fmt.Errorf("agent id %q is not usable as a label value: use at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit, e.g. agent-1", agent)
	}
	return nil
}

// attempt is one Claim in progress.
type attempt struct {
	*Client
	namespace, sandboxSet, agent string
	opts                         ClaimOptions
	start                        time.Time
	claims                       int  // claim writes sent
	cold                         bool // the sandbox was created, not taken
}

// run claims until a claim wins, the pool is still empty when the wait is
// over, or a call fails for a reason another try would not fix. Each try
// picks from a fresh list, so tries are spent only on real races, never on
// sandboxes an earlier list showed but others have since taken.
func (a *attempt) run(ctx context.Context) (*corev1.Pod, error) {
	deadline := a.start.Add(a.opts.Wait)
	for {
		pods, resourceVersion, err := a.available(ctx)
		if err != nil {
			return nil, err
		}
		if len(pods) == 0 {
			remaining := time.Until(deadline)
			if remaining <= 0 {
				return a.whenEmpty(ctx)
			}
			pod, err := a.waitAvailable(ctx, resourceVersion, remaining)
			if err != nil || pod == nil {
				if err != nil {
					return nil, err
				}
				continue // the wait ended: look again
			}
			pods = []*corev1.Pod{pod}
		}
		if a.claims == a.opts.MaxAttempts {
			return nil, a.lostRaces()
		}
		a.claims++
		claimed, err := a.claimPod(ctx, pods[rand.IntN(len(pods))].Name)
		if err == nil || !lostRace(err) {
			return claimed, err
		}
	}
}

// lostRaces is the error once every one of MaxAttempts claims lost its race.
func (a *attempt) lostRaces() error {
	return &kindError{kind: ErrLostRaces, msg: fmt.Sprintf(
		"other agents took each of the %d sandboxes tried in SandboxSet %s/%s; retry, or raise --max-attempts",
		a.claims, a.namespace, a.sandboxSet)}
}

// available lists the pool's claimable sandboxes, and the resourceVersion
// to watch from if there are none. It lists metadata only: picking is on
// every claim's path, a large pool's full Pods are megabytes, and the claim
// webhook checks readiness against the stored Pod anyway.
func (a *attempt) available(ctx context.Context) ([]*corev1.Pod, string, error) {
	list := podMetadataList()
	if err := a.c.List(ctx, list, client.InNamespace(a.namespace), availableLabels(a.sandboxSet)); err != nil {
		return nil, "", apiError(err, "list", "pods", a.namespace, agentRoleHint)
	}
	var pods []*corev1.Pod
	for i := range list.Items {
		if unclaimed(&list.Items[i]) {
			pods = append(pods, &corev1.Pod{ObjectMeta: list.Items[i].ObjectMeta})
		}
	}
	return pods, list.ResourceVersion, nil
}

// podMetadataList is an empty list of Pods' metadata, which the client
// serves with the API server's metadata-only encoding.
func podMetadataList() *metav1.PartialObjectMetadataList {
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("PodList"))
	return list
}

// unclaimed is what a Pod's metadata says of it: it is neither claimed nor
// terminating. Readiness is in its status, which the claim webhook checks.
func unclaimed(m *metav1.PartialObjectMetadata) bool {
	return m.DeletionTimestamp == nil && !agentsv1alpha1.IsClaimed(&corev1.Pod{ObjectMeta: m.ObjectMeta})
}

func availableLabels(sandboxSet string) client.MatchingLabels {
	return client.MatchingLabels{
		agentsv1alpha1.LabelSandboxSet: sandboxSet,
		agentsv1alpha1.LabelState:      string(agentsv1alpha1.StateAvailable),
	}
}

// claimable double-checks what the state label says, since the controller
// relabels a Pod only after its readiness changes.
func claimable(pod *corev1.Pod) bool {
	return pod.DeletionTimestamp == nil && !agentsv1alpha1.IsClaimed(pod) && agentsv1alpha1.IsPodReady(pod)
}

// claimPod sends the claim: a JSON patch that adds the holder label only if
// the Pod is still available. The API server applies it to the Pod as
// stored, so of two claims racing for one Pod only one passes the test, even
// when both carry the same agent id. The response is the Pod as stored,
// already marked claimed by the webhook.
func (a *attempt) claimPod(ctx context.Context, name string) (*corev1.Pod, error) {
	ops := []map[string]string{
		{"op": "test", "path": statePointer, "value": string(agentsv1alpha1.StateAvailable)},
		{"op": "add", "path": "/metadata/labels/" + escapePointer(agentsv1alpha1.LabelClaimedBy), "value": a.agent},
	}
	if shutdown := a.shutdownTime(); shutdown != "" {
		// Every pool Pod has annotations: the webhook stamps its
		// persistent contents at creation.
		ops = append(ops, map[string]string{"op": "add", "path": "/metadata/annotations/" + escapePointer(agentsv1alpha1.AnnotationShutdownTime), "value": shutdown})
	}
	patch, err := json.Marshal(ops)
	if err != nil {
		return nil, err
	}
	claimed := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: a.namespace, Name: name}}
	if err := a.c.Patch(ctx, claimed, client.RawPatch(types.JSONPatchType, patch)); err != nil {
		if limited := heldLimitError(err); limited != nil {
			return nil, limited
		}
		if isRBACRefusal(err) {
			return nil, apiError(err, "patch", "pods", a.namespace, agentRoleHint)
		}
		if unavailable := unavailableError(err); unavailable != nil {
			return nil, unavailable
		}
		return nil, fmt.Errorf("claiming sandbox %s: %w", name, err)
	}
	return claimed, nil
}

// shutdownTime is the shutdown time the claim sets, or "" for none.
func (a *attempt) shutdownTime() string {
	if a.opts.TTL <= 0 {
		return ""
	}
	return agentsv1alpha1.FormatShutdownTime(a.start.Add(a.opts.TTL))
}

// statePointer is the state label's JSON pointer, which a claim tests.
var statePointer = "/metadata/labels/" + escapePointer(agentsv1alpha1.LabelState)

// escapePointer escapes a map key for a JSON pointer (RFC 6901).
func escapePointer(key string) string {
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(key)
}

// holderField is how the claim webhook names the holder label in its refusals.
const holderField = "metadata.labels[" + agentsv1alpha1.LabelClaimedBy + "]"

// lostRace reports whether a claim failed because the Pod stopped being
// claimable since it was listed: it is no longer available (the claim's
// test operation failed), another agent claimed it (Conflict), it lost
// readiness or began terminating (the webhook forbids the holder label), or
// it is gone.
func lostRace(err error) bool {
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		return true
	}
	var status apierrors.APIStatus
	if !apierrors.IsInvalid(err) || !errors.As(err, &status) {
		return false
	}
	details := status.Status().Details
	if details == nil || len(details.Causes) == 0 {
		// A failed JSON patch test: the API server answers 422 with neither
		// message nor causes. Every refusal of the claim itself names a field.
		return true
	}
	for _, cause := range details.Causes {
		if cause.Type == metav1.CauseTypeForbidden && cause.Field == holderField {
			return true
		}
	}
	return false
}

// waitAvailable watches the pool from resourceVersion, so nothing since the
// empty list is missed, until a sandbox is claimable or d runs out. It
// returns nil, nil when the wait should end in a fresh look: d ran out, or
// the watch ended or expired.
func (a *attempt) waitAvailable(ctx context.Context, resourceVersion string, d time.Duration) (*corev1.Pod, error) {
	waitCtx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	w, err := a.c.Watch(waitCtx, &corev1.PodList{}, client.InNamespace(a.namespace), availableLabels(a.sandboxSet),
		&client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: resourceVersion}})
	if err != nil {
		switch {
		case waitCtx.Err() != nil:
			return nil, ctx.Err()
		case apierrors.IsResourceExpired(err) || apierrors.IsGone(err):
			return nil, nil
		}
		return nil, apiError(err, "watch", "pods", a.namespace, agentRoleHint)
	}
	defer w.Stop()
	for {
		select {
		case <-waitCtx.Done():
			return nil, ctx.Err()
		case ev, ok := <-w.ResultChan():
			if !ok {
				return nil, ctx.Err()
			}
			switch ev.Type {
			case watch.Added, watch.Modified:
				if pod, ok := ev.Object.(*corev1.Pod); ok && claimable(pod) {
					return pod, nil
				}
			case watch.Error:
				if err := apierrors.FromObject(ev.Object); !apierrors.IsResourceExpired(err) && !apierrors.IsGone(err) {
					return nil, fmt.Errorf("watching SandboxSet %s/%s for an available sandbox: %w", a.namespace, a.sandboxSet, err)
				}
				return nil, nil
			}
		}
	}
}

// whenEmpty says why the pool had nothing to claim, or claims cold.
func (a *attempt) whenEmpty(ctx context.Context) (*corev1.Pod, error) {
	sbs := &agentsv1alpha1.SandboxSet{}
	if err := a.c.Get(ctx, client.ObjectKey{Namespace: a.namespace, Name: a.sandboxSet}, sbs); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, &kindError{kind: ErrNoSandboxSet, err: err,
				msg: fmt.Sprintf("no SandboxSet %s in namespace %s", a.sandboxSet, a.namespace)}
		}
		return nil, apiError(err, "get", "sandboxsets", a.namespace, agentRoleHint)
	}
	if a.opts.ColdIfEmpty {
		return a.claimCold(ctx, sbs)
	}
	return nil, &kindError{kind: ErrPoolEmpty, msg: emptyPoolMessage(sbs, a.opts.Wait)}
}

// emptyPoolMessage says why a pool had nothing to claim, and what can help:
// waiting only helps a pool that is refilling.
func emptyPoolMessage(sbs *agentsv1alpha1.SandboxSet, waited time.Duration) string {
	pool := sbs.Namespace + "/" + sbs.Name
	if sbs.Spec.DesiredReplicas() == 0 {
		return fmt.Sprintf("SandboxSet %s is scaled to 0: it keeps no warm sandboxes; scale it up (kubectl scale sbs %s --replicas=N), or claim cold (--cold-if-empty)",
			pool, sbs.Name)
	}
	creating := max(0, sbs.Status.Replicas-sbs.Status.AvailableReplicas)
	if waited > 0 {
		return fmt.Sprintf("SandboxSet %s had no available sandbox after waiting %s (%d creating); wait longer, or claim cold (--cold-if-empty)",
			pool, waited, creating)
	}
	return fmt.Sprintf("SandboxSet %s has no available sandbox (%d creating); retry, wait for one (--wait 30s), or claim cold (--cold-if-empty)",
		pool, creating)
}

// claimCold creates a sandbox from the pool's current template, claimed
// from birth. It has no ownerReference, like a claimed warm sandbox, so the
// pool never counts it; the webhook stamps it claimed and refuses it unless
// its revision is the pool's current one.
func (a *attempt) claimCold(ctx context.Context, sbs *agentsv1alpha1.SandboxSet) (*corev1.Pod, error) {
	tmpl := sbs.Spec.Template.DeepCopy()
	labels := tmpl.Labels
	if labels == nil {
		labels = map[string]string{}
	}
	labels[agentsv1alpha1.LabelSandboxSet] = sbs.Name
	labels[agentsv1alpha1.LabelRevision] = sbs.Spec.Revision()
	labels[agentsv1alpha1.LabelClaimedBy] = a.agent
	annotations := tmpl.Annotations
	if shutdown := a.shutdownTime(); shutdown != "" {
		if annotations == nil {
			annotations = map[string]string{}
		}
		annotations[agentsv1alpha1.AnnotationShutdownTime] = shutdown
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:   sbs.Namespace,
			Name:        sbs.Name + "-" + utilrand.String(5),
			Labels:      labels,
			Annotations: annotations,
		},
		Spec: tmpl.Spec,
	}
	a.claims++
	if err := a.c.Create(ctx, pod); err != nil {
		if unavailable := unavailableError(err); unavailable != nil {
			return nil, unavailable
		}
		if limited := heldLimitError(err); limited != nil {
			return nil, limited
		}
		return nil, apiError(err, "create", "pods", a.namespace,
			"a cold claim needs create on pods, which the agent Role in config/rbac/agent_role.yaml does not grant")
	}
	a.cold = true
	return pod, nil
}

// sandboxOf reads a claimed Pod's labels and claim stamp.
func sandboxOf(pod *corev1.Pod) Sandbox {
	// A missing or malformed stamp leaves ClaimedAt zero, which says unknown.
	at, _ := time.Parse(time.RFC3339Nano, pod.Annotations[agentsv1alpha1.AnnotationClaimedAt])
	shutdown, _ := agentsv1alpha1.ShutdownTime(pod)
	return Sandbox{
		ShutdownTime: shutdown,
		Name:         pod.Name,
		Namespace:    pod.Namespace,
		SandboxSet:   pod.Labels[agentsv1alpha1.LabelSandboxSet],
		Agent:        pod.Labels[agentsv1alpha1.LabelClaimedBy],
		IP:           pod.Status.PodIP,
		ClaimedAt:    at,
	}
}
