package webhooks

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
)

// heldLimit holds each identity to its pool's spec.maxHeldPerIdentity at
// claim time, under races: concurrent claims by one identity, through any
// manager replica, never end with more held than the limit.
//
// What an identity holds is what the manager's cache shows claimed by it
// (an index), plus the claims admitted but not yet in the cache. Those are
// kept in a ledger the API server serializes: one Lease per pool and
// identity, whose update, with its resourceVersion, is the reservation. Of
// two claims racing past the count, one updates the ledger and the other
// conflicts, reads the first's reservation and is counted against it.
// Claims by one identity through this replica also queue on a lock, so
// they rarely conflict at all.
type heldLimit struct {
	client    client.Client // the manager's cache, for the index; writes go to the API server
	apiReader client.Reader // ledgers, and Pods before a refusal
	now       func() time.Time
	locks     keyedLocks
}

// A reservation counts until the manager's cache shows its claim (then the
// index does), for at most pendingTTL. Before refusing, the API server is
// asked: a reservation counts if its Pod is claimed by the identity, or if
// it is younger than inFlight and its claim may still land (its Pod is
// unclaimed, or, for a cold claim, not created yet). Admission is over
// within the webhooks' timeouts, so an older one is a claim that failed.
const (
	pendingTTL    = time.Minute
	inFlight      = 10 * time.Second
	ledgerRetries = 8
)

// holderIndex indexes cached pool Pods by namespace/pool/identity of their
// holder (agents.kruise.io/claimed-by-user).
const holderIndex = "agents.kruise.io/holder"

func holderKey(namespace, pool, user string) string { return namespace + "/" + pool + "/" + user }

func holderIndexKeys(obj client.Object) []string {
	user := obj.GetAnnotations()[agentsv1alpha1.AnnotationClaimedByUser]
	pool := obj.GetLabels()[agentsv1alpha1.LabelSandboxSet]
	if user == "" || pool == "" || obj.GetDeletionTimestamp() != nil {
		return nil
	}
	return []string{holderKey(obj.GetNamespace(), pool, user)}
}

// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;create;update

// reserve admits the claim of pod by user, or refuses it with the limit,
// what user holds and how to make room. dryRun counts without reserving.
func (h *heldLimit) reserve(ctx context.Context, sbs *agentsv1alpha1.SandboxSet, pod, user string, cold, dryRun bool) error {
	limit := int(*sbs.Spec.MaxHeldPerIdentity)
	unlock := h.locks.lock(holderKey(sbs.Namespace, sbs.Name, user))
	defer unlock()
	for range ledgerRetries {
		ledger, pending, err := h.readLedger(ctx, sbs, pod, user)
		if err != nil {
			return err
		}
		held, err := h.cachedHeld(ctx, sbs, user)
		if err != nil {
			return err
		}
		now := h.now()
		pending = h.prune(ctx, sbs.Namespace, pending, now)
		if _, reserved := pending[pod]; held[pod] || reserved {
			return nil // the API server judging this same claim again
		}
		if counted := union(held, pending); len(counted) >= limit {
			if counted, pending, err = h.confirm(ctx, sbs, user, counted, pending, now); err != nil {
				return err
			}
			if len(counted) >= limit {
				return apierrors.NewForbidden(podResource, pod, fmt.Errorf(
					"rule held-limit: %s already holds %d of SandboxSet %s's sandboxes (%s), its limit (spec.maxHeldPerIdentity: %d); release one (kubectl sbs release <pod>, or delete it) before claiming another",
					user, len(counted), sbs.Name, strings.Join(counted, ", "), limit))
			}
		}
		if dryRun {
			return nil
		}
		pending[pod] = reservation{At: now, Cold: cold}
		err = h.writeLedger(ctx, sbs, user, ledger, pending)
		if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
			continue // another replica reserved first: count again
		}
		return err
	}
	return apierrors.NewConflict(podResource, pod, fmt.Errorf(
		"%s is claiming from SandboxSet %s through several manager replicas at once; retry the claim", user, sbs.Name))
}

// cachedHeld is what the manager's cache shows user holds in the pool.
func (h *heldLimit) cachedHeld(ctx context.Context, sbs *agentsv1alpha1.SandboxSet, user string) (map[string]bool, error) {
	list := &corev1.PodList{}
	if err := h.client.List(ctx, list, client.InNamespace(sbs.Namespace), client.MatchingFields{holderIndex: holderKey(sbs.Namespace, sbs.Name, user)}); err != nil {
		return nil, apierrors.NewInternalError(fmt.Errorf("listing the sandboxes %s holds: %w", user, err))
	}
	held := make(map[string]bool, len(list.Items))
	for _, pod := range list.Items {
		held[pod.Name] = true
	}
	return held, nil
}

// prune drops the reservations the cache has caught up with: their Pod is
// claimed (counted by the index if by user; lost if by another) or going.
func (h *heldLimit) prune(ctx context.Context, namespace string, pending map[string]reservation, now time.Time) map[string]reservation {
	out := make(map[string]reservation, len(pending))
	for name, r := range pending {
		if now.Sub(r.At) > pendingTTL {
			continue
		}
		pod := &corev1.Pod{}
		if err := h.client.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, pod); err == nil &&
			(agentsv1alpha1.IsClaimed(pod) || pod.DeletionTimestamp != nil) {
			continue
		}
		out[name] = r
	}
	return out
}

// confirm recounts from the API server before a refusal: the cache may
// still show a sandbox the identity has just released, and a reservation
// may be for a claim that failed after admission.
func (h *heldLimit) confirm(ctx context.Context, sbs *agentsv1alpha1.SandboxSet, user string, counted []string, pending map[string]reservation, now time.Time) ([]string, map[string]reservation, error) {
	var confirmed []string
	kept := map[string]reservation{}
	for _, name := range counted {
		pod := &metav1.PartialObjectMetadata{}
		pod.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Pod"))
		err := h.apiReader.Get(ctx, types.NamespacedName{Namespace: sbs.Namespace, Name: name}, pod)
		if err != nil && !apierrors.IsNotFound(err) {
			return nil, nil, apierrors.NewInternalError(fmt.Errorf("reading sandbox %s: %w", name, err))
		}
		r, reserved := pending[name]
		found := err == nil
		switch {
		case found && pod.DeletionTimestamp == nil && pod.Annotations[agentsv1alpha1.AnnotationClaimedByUser] == user:
			confirmed = append(confirmed, name)
		case reserved && now.Sub(r.At) < inFlight && (found && pod.DeletionTimestamp == nil && pod.Labels[agentsv1alpha1.LabelClaimedBy] == "" || !found && r.Cold):
			// Still in flight: admitted, not yet stored, or, cold, not yet created.
			confirmed = append(confirmed, name)
			kept[name] = r
		}
	}
	return confirmed, kept, nil
}

// reservation is a claim admitted and not yet seen in the cache.
type reservation struct {
	At time.Time `json:"at"`
	// Cold says the claim creates its Pod: until it lands, there is none.
	Cold bool `json:"cold,omitempty"`
}

// union lists, sorted, the Pods in either set.
func union(held map[string]bool, pending map[string]reservation) []string {
	names := slices.Collect(maps.Keys(held))
	for name := range pending {
		if !held[name] {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// ledgerName names the Lease that counts user's claims in the pool; a hash,
// since a user name is no valid object name.
func ledgerName(pool, user string) string {
	sum := sha256.Sum256([]byte(user))
	return pool + "-held-" + hex.EncodeToString(sum[:])[:12]
}

// readLedger returns the ledger as stored (nil if there is none yet) and
// its reservations. It refuses the claim of pod if a Lease that is not the
// pool's holds the ledger's name.
func (h *heldLimit) readLedger(ctx context.Context, sbs *agentsv1alpha1.SandboxSet, pod, user string) (*coordinationv1.Lease, map[string]reservation, error) {
	lease := &coordinationv1.Lease{}
	err := h.apiReader.Get(ctx, types.NamespacedName{Namespace: sbs.Namespace, Name: ledgerName(sbs.Name, user)}, lease)
	if apierrors.IsNotFound(err) {
		return nil, map[string]reservation{}, nil
	}
	if err != nil {
		return nil, nil, apierrors.NewInternalError(fmt.Errorf("reading %s's claim ledger in SandboxSet %s: %w", user, sbs.Name, err))
	}
	if why := foreignLedger(lease, sbs, user); why != "" {
		ctrl.LoggerFrom(ctx).Info("Refused a claim: a Lease that is not the pool's holds the name of the identity's claim ledger",
			"lease", lease.Name, "reason", why) // the request's logger names the user
		return nil, nil, apierrors.NewForbidden(podResource, pod, fmt.Errorf(
			"rule claim-ledger: Lease %s in namespace %s has the name of %s's claim ledger in SandboxSet %s but is not the operator's: %s; a cluster admin must delete it (kubectl -n %s delete lease %s) before %s can claim from this pool",
			lease.Name, lease.Namespace, user, sbs.Name, why, lease.Namespace, lease.Name, user))
	}
	pending := map[string]reservation{}
	if raw := lease.Annotations[agentsv1alpha1.AnnotationLedgerPending]; raw != "" {
		if err := json.Unmarshal([]byte(raw), &pending); err != nil {
			// Unreadable reservations are expired ones: start over.
			ctrl.LoggerFrom(ctx).Info("Claim ledger unreadable; starting it over", "lease", lease.Name, "error", err.Error())
			pending = map[string]reservation{}
		}
	}
	return lease, pending, nil
}

// foreignLedger says why the Lease under user's ledger name is not the
// pool's ledger, or "" if it is. Only a labelled Lease is kept the
// operator's (pool-objects; claim-ledger keeps unlabelled ones from taking
// the name), so a ledger must carry the pool's label, an owner reference to
// this SandboxSet (not an earlier one of the same name) and user as holder.
func foreignLedger(lease *coordinationv1.Lease, sbs *agentsv1alpha1.SandboxSet, user string) string {
	switch {
	case lease.Labels[agentsv1alpha1.LabelSandboxSet] != sbs.Name:
		return "it is not labelled " + agentsv1alpha1.LabelSandboxSet + "=" + sbs.Name
	case !slices.ContainsFunc(lease.OwnerReferences, func(o metav1.OwnerReference) bool { return o.UID == sbs.UID }):
		return "it is not owned by this SandboxSet"
	case lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity != user:
		return "its holderIdentity is not " + user
	}
	return ""
}

// writeLedger stores the reservations: a creation, or an update of the
// ledger as read, which conflicts if anyone wrote it since.
func (h *heldLimit) writeLedger(ctx context.Context, sbs *agentsv1alpha1.SandboxSet, user string, lease *coordinationv1.Lease, pending map[string]reservation) error {
	data, err := json.Marshal(pending)
	if err != nil {
		return apierrors.NewInternalError(fmt.Errorf("encoding the claim ledger: %w", err))
	}
	if lease == nil {
		lease = &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{
				Namespace: sbs.Namespace, Name: ledgerName(sbs.Name, user),
				Labels: map[string]string{agentsv1alpha1.LabelSandboxSet: sbs.Name},
				// Deleted with the pool. Not blocking: that would need the
				// right to set finalizers on SandboxSets.
				OwnerReferences: []metav1.OwnerReference{{
					APIVersion: agentsv1alpha1.GroupVersion.String(), Kind: "SandboxSet", Name: sbs.Name, UID: sbs.UID,
				}},
			},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: &user},
		}
		lease.Annotations = map[string]string{agentsv1alpha1.AnnotationLedgerPending: string(data)}
		err = h.client.Create(ctx, lease)
	} else {
		lease = lease.DeepCopy()
		if lease.Annotations == nil {
			lease.Annotations = map[string]string{}
		}
		lease.Annotations[agentsv1alpha1.AnnotationLedgerPending] = string(data)
		err = h.client.Update(ctx, lease)
	}
	if err != nil && !apierrors.IsConflict(err) && !apierrors.IsAlreadyExists(err) {
		return apierrors.NewInternalError(fmt.Errorf("writing %s's claim ledger in SandboxSet %s: %w", user, sbs.Name, err))
	}
	return err
}

// keyedLocks is one mutex per key, kept only while someone holds or waits
// for it.
type keyedLocks struct {
	mu    sync.Mutex
	locks map[string]*keyedLock
}

type keyedLock struct {
	sync.Mutex
	users int
}

func (k *keyedLocks) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[string]*keyedLock{}
	}
	l := k.locks[key]
	if l == nil {
		l = &keyedLock{}
		k.locks[key] = l
	}
	l.users++
	k.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		k.mu.Lock()
		if l.users--; l.users == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}
