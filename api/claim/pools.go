package claim

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
)

// Pool is a SandboxSet as an agent sees it: how many sandboxes it holds and
// how many can be claimed now.
type Pool struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	// Replicas counts the pool's sandboxes, creating and available.
	Replicas int32 `json:"replicas"`
	// Available counts the sandboxes that can be claimed now.
	Available      int32  `json:"available"`
	UpdateRevision string `json:"updateRevision,omitempty"`
}

func poolOf(sbs *agentsv1alpha1.SandboxSet) Pool {
	return Pool{
		Name:           sbs.Name,
		Namespace:      sbs.Namespace,
		Replicas:       sbs.Status.Replicas,
		Available:      sbs.Status.AvailableReplicas,
		UpdateRevision: sbs.Status.UpdateRevision,
	}
}

// List returns the pools in namespace, by name.
func (c *Client) List(ctx context.Context, namespace string) ([]Pool, error) {
	list := &agentsv1alpha1.SandboxSetList{}
	if err := c.c.List(ctx, list, client.InNamespace(namespace)); err != nil {
		hint := agentRoleHint
		if namespace == "" {
			hint = "listing every namespace needs list on sandboxsets in a ClusterRole; the agent Role is namespaced"
		}
		return nil, apiError(err, "list", "sandboxsets", namespace, hint)
	}
	pools := make([]Pool, len(list.Items))
	for i := range list.Items {
		pools[i] = poolOf(&list.Items[i])
	}
	return pools, nil
}

// Pool returns one pool, or ErrNoSandboxSet.
func (c *Client) Pool(ctx context.Context, namespace, name string) (*Pool, error) {
	sbs := &agentsv1alpha1.SandboxSet{}
	if err := c.c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, sbs); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, &kindError{kind: ErrNoSandboxSet, err: err, msg: fmt.Sprintf("no SandboxSet %s in namespace %s", name, namespace)}
		}
		return nil, apiError(err, "get", "sandboxsets", namespace, agentRoleHint)
	}
	pool := poolOf(sbs)
	return &pool, nil
}

// Claimed returns the sandboxes claimed from the pool and not being
// deleted, by name. Claimed sandboxes outlive their SandboxSet, so they are
// listed whether or not it still exists.
func (c *Client) Claimed(ctx context.Context, namespace, sandboxSet string) ([]Sandbox, error) {
	list := &corev1.PodList{}
	if err := c.c.List(ctx, list, client.InNamespace(namespace), client.MatchingLabels{agentsv1alpha1.LabelSandboxSet: sandboxSet}); err != nil {
		return nil, apiError(err, "list", "pods", namespace, agentRoleHint)
	}
	var claimed []Sandbox
	for i := range list.Items {
		if pod := &list.Items[i]; agentsv1alpha1.IsClaimed(pod) && pod.DeletionTimestamp == nil {
			claimed = append(claimed, sandboxOf(&list.Items[i]))
		}
	}
	return claimed, nil
}

// Release gives a claimed sandbox back by deleting its Pod: a used sandbox
// is never returned to the pool, which refills with a fresh one. It refuses
// a warm sandbox or any other Pod with ErrNotClaimed, so that a mistyped name
// cannot shrink a pool or delete an unrelated Pod. A Pod already gone is
// released.
func (c *Client) Release(ctx context.Context, namespace, name string) error {
	pod := &corev1.Pod{}
	if err := c.c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, pod); err != nil {
		if apierrors.IsNotFound(err) {
			return nil // already gone: released
		}
		return apiError(err, "get", "pods", namespace, agentRoleHint)
	}
	pool := pod.Labels[agentsv1alpha1.LabelSandboxSet]
	switch {
	case pool == "":
		return &kindError{kind: ErrNotClaimed, msg: fmt.Sprintf("pod %s/%s is not a sandbox: it has no %s label", namespace, name, agentsv1alpha1.LabelSandboxSet)}
	case !agentsv1alpha1.IsClaimed(pod):
		return &kindError{kind: ErrNotClaimed, msg: fmt.Sprintf(
			"sandbox %s/%s is not claimed: it belongs to the warm pool of SandboxSet %s; only a claimed sandbox can be released", namespace, name, pool)}
	}
	// The UID precondition deletes exactly the Pod checked above, never a
	// warm namesake created since.
	if err := c.c.Delete(ctx, pod, client.Preconditions{UID: &pod.UID}); err != nil && !apierrors.IsNotFound(err) {
		if err := holderError(err, name); err != nil {
			return err
		}
		return apiError(err, "delete", "pods", namespace, agentRoleHint)
	}
	return nil
}

// Renew moves a claimed sandbox's shutdown time to now plus ttl, sooner or
// later, within its pool's claimLifetime.max. Only the identity that claimed
// the sandbox may renew it (ErrNotHolder otherwise); the claim webhook
// refuses a time past the maximum, with the latest allowed.
func (c *Client) Renew(ctx context.Context, namespace, name string, ttl time.Duration) (*Sandbox, error) {
	if ttl <= 0 {
		return nil, fmt.Errorf("a TTL must be positive, not %s", ttl)
	}
	shutdown := agentsv1alpha1.FormatShutdownTime(time.Now().Add(ttl))
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{agentsv1alpha1.AnnotationShutdownTime: shutdown}}})
	if err != nil {
		return nil, err
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
	if err := c.c.Patch(ctx, pod, client.RawPatch(types.MergePatchType, patch)); err != nil {
		notHolder, unavailable := holderError(err, name), unavailableError(err)
		switch {
		case apierrors.IsNotFound(err):
			return nil, fmt.Errorf("no sandbox %s in namespace %s: %w", name, namespace, err)
		case notHolder != nil:
			return nil, notHolder
		case unavailable != nil:
			return nil, unavailable
		case apierrors.IsForbidden(err) && strings.Contains(err.Error(), "rule warm-metadata"):
			return nil, &kindError{kind: ErrNotClaimed, err: err, msg: fmt.Sprintf(
				"sandbox %s/%s is not claimed: it belongs to a warm pool; only a claimed sandbox can be renewed", namespace, name)}
		}
		return nil, apiError(err, "patch", "pods", namespace, agentRoleHint)
	}
	sbx := sandboxOf(pod)
	return &sbx, nil
}
