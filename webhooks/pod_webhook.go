package webhooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
)

// PodWebhook admits pool Pods: those labelled agents.kruise.io/sandboxset.
// The objectSelector keeps every other Pod in the cluster away from it.
//
// It fails closed: while it is down no pool Pod is created and no sandbox is
// claimed. Failing open would let a claim through unchecked, so two agents
// could hold one sandbox, which is worse than a claim that waits.
type PodWebhook struct {
	// Client reads SandboxSets from the manager's cache, and dry-runs Pods
	// from their templates to check cold claims.
	Client client.Client
	// APIReader reads SandboxSets uncached, before refusing on what a cache
	// says: this replica's cache may trail the leader's.
	APIReader client.Reader
	// ManagerUsername is the SandboxSet controller's identity: the only one
	// allowed to create warm Pods and move them between creating and available.
	ManagerUsername string

	decoder     admission.Decoder
	now         func() time.Time
	templates   *templateSpecs
	podSecurity *podSecurity
	held        *heldLimit
}

var _ admission.Handler = &PodWebhook{}

// The API server calls the Pod webhook only where it has something to
// decide, since every call is a round trip on a claim's or a refill's path:
//   - the objectSelector keeps every other Pod in the cluster away;
//   - changes-what-it-judges skips updates that leave the four pool labels
//     and the shutdown time alone (the webhook admits those unchanged), such
//     as an agent's own labels on its sandbox;
//   - not-the-manager skips the manager's own updates, such as moving a Pod
//     between creating and available. It is only a shortcut: a manager that
//     runs under another name is simply judged as it would be without it.
//     config/default and config/local rewrite its namespace and name.
//
// Creations always reach it: it stamps every new pool Pod.
//
// +kubebuilder:webhook:path=/mutate--v1-pod,mutating=true,failurePolicy=fail,sideEffects=NoneOnDryRun,groups="",resources=pods,verbs=create;update,versions=v1,name=mpod.agents.kruise.io,admissionReviewVersions=v1,timeoutSeconds=5,patch=`{"objectSelector":{"matchExpressions":[{"key":"agents.kruise.io/sandboxset","operator":"Exists"}]},"matchConditions":[{"name":"changes-what-it-judges","expression":"request.operation != 'UPDATE' || ['agents.kruise.io/claimed-by', 'agents.kruise.io/state', 'agents.kruise.io/sandboxset', 'agents.kruise.io/revision'].exists(k, object.metadata.?labels[?k].orValue('') != oldObject.metadata.?labels[?k].orValue('')) || object.metadata.?annotations[?'agents.kruise.io/shutdown-time'] != oldObject.metadata.?annotations[?'agents.kruise.io/shutdown-time']"},{"name":"not-the-manager","expression":"request.operation != 'UPDATE' || request.userInfo.username != 'system:serviceaccount:' + 'sandboxset-system' + ':' + 'sandboxset-controller-manager'"}]}`

// Handle decodes the Pod, judges it with Default and answers with a patch
// of its metadata, the only part of a Pod the webhook changes. A generic
// defaulter marshals the whole Pod and diffs it against the request as
// JSON on every call: in a profile of sustained claims that diff was more
// than half of the webhook's time and a fifth of the manager's CPU.
func (w *PodWebhook) Handle(ctx context.Context, req admission.Request) admission.Response {
	pod, err := w.decodedPod(req.Object)
	if err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	// Default never touches the managed fields: leave them out of the copy.
	unmanaged := pod.ObjectMeta
	unmanaged.ManagedFields = nil
	before := unmanaged.DeepCopy()
	if err := w.Default(admission.NewContextWithRequest(ctx, req), pod); err != nil {
		var refusal apierrors.APIStatus
		if errors.As(err, &refusal) {
			status := refusal.Status()
			return admission.Response{AdmissionResponse: admissionv1.AdmissionResponse{Result: &status}}
		}
		return admission.Denied(err.Error())
	}
	patch, err := metadataPatch(before, &pod.ObjectMeta)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	}
	return admission.Patched("", patch...)
}

// metadataPatch is the JSON patch that turns a Pod's metadata before into
// after. Managed fields are left out of the diff: they are most of the
// metadata's size, and the webhook never changes them.
func metadataPatch(before, after *metav1.ObjectMeta) ([]jsonpatch.JsonPatchOperation, error) {
	b, a := *before, *after
	b.ManagedFields, a.ManagedFields = nil, nil
	if equality.Semantic.DeepEqual(&b, &a) {
		return nil, nil
	}
	from, err := json.Marshal(&b)
	if err != nil {
		return nil, fmt.Errorf("encoding the Pod's metadata: %w", err)
	}
	to, err := json.Marshal(&a)
	if err != nil {
		return nil, fmt.Errorf("encoding the Pod's metadata: %w", err)
	}
	ops, err := jsonpatch.CreatePatch(from, to)
	if err != nil {
		return nil, fmt.Errorf("diffing the Pod's metadata: %w", err)
	}
	for i := range ops {
		ops[i].Path = "/metadata" + ops[i].Path
	}
	return ops, nil
}

// Default admits a pool Pod's creation or update, completing it where the
// operator owes it something: a new Pod's stamps, a claim's release.
func (w *PodWebhook) Default(ctx context.Context, pod *corev1.Pod) error {
	req, err := admission.RequestFromContext(ctx)
	if err != nil {
		return apierrors.NewInternalError(fmt.Errorf("reading admission request: %w", err))
	}
	byManager := req.UserInfo.Username == w.ManagerUsername
	switch req.Operation {
	case admissionv1.Create:
		err := w.admitCreate(ctx, pod, req.UserInfo.Username, byManager, isDryRun(req))
		if pod.Labels[agentsv1alpha1.LabelClaimedBy] != "" {
			countClaim(pod, "cold", err)
		}
		return err
	case admissionv1.Update:
		oldPod, err := w.decodedPod(req.OldObject)
		if err != nil {
			return apierrors.NewBadRequest(fmt.Sprintf("decoding the Pod being updated: %v", err))
		}
		claiming := pod.Labels[agentsv1alpha1.LabelClaimedBy] != "" &&
			pod.Labels[agentsv1alpha1.LabelClaimedBy] != oldPod.Labels[agentsv1alpha1.LabelClaimedBy]
		err = w.admitUpdate(ctx, oldPod, pod, req.UserInfo.Username, byManager, isDryRun(req))
		if claiming {
			countClaim(pod, "warm", err)
		}
		return err
	}
	return nil
}

// admitUpdate judges an update and completes a claim in the same write.
func (w *PodWebhook) admitUpdate(ctx context.Context, oldPod, pod *corev1.Pod, username string, byManager, dryRun bool) error {
	now := w.now()
	claim, err := admitPoolPodUpdate(oldPod, pod, requester{username: username, manager: byManager}, now)
	if err != nil || !claim {
		return err
	}
	sbs, err := w.poolOf(ctx, pod)
	if err != nil {
		return err
	}
	var lifetime *agentsv1alpha1.ClaimLifetime
	if sbs != nil {
		lifetime = sbs.Spec.ClaimLifetime
	}
	if err := invalid(podKind, pod.Name, completeClaim(pod, now, username, lifetime)); err != nil {
		return err
	}
	// Last: a claim refused for anything else reserves nothing.
	if sbs != nil && sbs.Spec.MaxHeldPerIdentity != nil {
		if err := w.held.reserve(ctx, sbs, pod.Name, username, false, dryRun); err != nil {
			return err
		}
	}
	ctrl.LoggerFrom(ctx).V(1).Info("Sandbox claimed", "pod", pod.Name, "agent", pod.Labels[agentsv1alpha1.LabelClaimedBy])
	return nil
}

// poolOf is the Pod's SandboxSet, from the cache, or nil if it is gone: a
// claim of a Pod whose pool is gone, which the garbage collector follows.
func (w *PodWebhook) poolOf(ctx context.Context, pod *corev1.Pod) (*agentsv1alpha1.SandboxSet, error) {
	sbs := &agentsv1alpha1.SandboxSet{}
	key := types.NamespacedName{Namespace: pod.Namespace, Name: pod.Labels[agentsv1alpha1.LabelSandboxSet]}
	if err := w.Client.Get(ctx, key, sbs); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, apierrors.NewInternalError(fmt.Errorf("reading SandboxSet %s: %w", key.Name, err))
	}
	return sbs, nil
}

// isDryRun says whether the request stores nothing: then the claim
// webhook's one side effect, a held-limit reservation, is left out.
func isDryRun(req admission.Request) bool {
	return req.DryRun != nil && *req.DryRun
}

// admitCreate stamps a new pool Pod with its SandboxSet's persistent
// contents and its starting state. Warm Pods come only from the manager;
// anyone else may create a Pod from a pool's template only already claimed
// (a cold claim), exactly as the template at the pool's current revision
// makes it, and it never joins the pool.
func (w *PodWebhook) admitCreate(ctx context.Context, pod *corev1.Pod, username string, byManager, dryRun bool) error {
	poolPath := labelsPath.Key(agentsv1alpha1.LabelSandboxSet)
	name := pod.Labels[agentsv1alpha1.LabelSandboxSet]
	holder := pod.Labels[agentsv1alpha1.LabelClaimedBy]
	key := types.NamespacedName{Namespace: pod.Namespace, Name: name}
	sbs := &agentsv1alpha1.SandboxSet{}
	err := w.Client.Get(ctx, key, sbs)
	if apierrors.IsNotFound(err) || (err == nil && holder != "" && pod.Labels[agentsv1alpha1.LabelRevision] != sbs.Spec.Revision()) {
		// A just-created pool, or a just-changed template, may not have
		// reached this replica's cache yet: ask the API server before refusing.
		err = w.APIReader.Get(ctx, key, sbs)
	}
	if err != nil {
		if apierrors.IsNotFound(err) {
			return invalid(podKind, pod.Name, field.ErrorList{field.NotFound(poolPath, name)})
		}
		return apierrors.NewInternalError(fmt.Errorf("reading SandboxSet %s: %w", name, err))
	}

	if holder == "" {
		if !byManager {
			return invalid(podKind, pod.Name, field.ErrorList{field.Forbidden(poolPath,
				"only the SandboxSet controller creates warm sandboxes; to start a sandbox from this pool's template yourself, create it already claimed (agents.kruise.io/claimed-by=<agent-id>)")})
		}
		// The namespace's own PodSecurity admission holds the Pod to its
		// level; this holds it to the operator's minimum too, for a
		// template admitted before the minimum was raised.
		if errs := w.podSecurity.violations(w.podSecurity.floor(), &pod.ObjectMeta, &pod.Spec, field.NewPath("spec")); len(errs) > 0 {
			return invalid(podKind, pod.Name, errs)
		}
		stampNewPod(pod, sbs)
		pod.Labels[agentsv1alpha1.LabelState] = string(agentsv1alpha1.StateCreating)
		return nil
	}

	var errs field.ErrorList
	for _, msg := range validation.IsValidLabelValue(holder) {
		errs = append(errs, field.Invalid(holderPath, holder, "an agent id must be a valid label value: "+msg))
	}
	if rev, want := pod.Labels[agentsv1alpha1.LabelRevision], sbs.Spec.Revision(); rev != want {
		errs = append(errs, field.Invalid(labelsPath.Key(agentsv1alpha1.LabelRevision), rev,
			fmt.Sprintf("a sandbox created from SandboxSet %s must carry its current revision %s", name, want)))
	}
	if len(errs) == 0 && !byManager {
		pol, err := w.podSecurity.policyFor(ctx, pod.Namespace)
		if err != nil {
			return err
		}
		insecure := w.podSecurity.violations(pol.enforce, &pod.ObjectMeta, &pod.Spec, field.NewPath("spec"))
		diffs, err := w.templates.compare(ctx, sbs, pod)
		// A template the namespace's level now refuses cannot be dry-run
		// for the comparison: the Pod Security refusal says why.
		if err != nil && len(insecure) == 0 {
			return apierrors.NewInternalError(fmt.Errorf("checking the sandbox against SandboxSet %s's template: %w", name, err))
		}
		errs = append(append(errs, insecure...), diffs...)
	}
	if len(errs) > 0 {
		return invalid(podKind, pod.Name, errs)
	}
	stampNewPod(pod, sbs)
	if err := invalid(podKind, pod.Name, completeClaim(pod, w.now(), username, sbs.Spec.ClaimLifetime)); err != nil {
		return err
	}
	if sbs.Spec.MaxHeldPerIdentity == nil {
		return nil
	}
	if pod.Name == "" {
		// The ledger counts claims by name, and the API server names a
		// generateName Pod only after mutating admission.
		pod.Name = pod.GenerateName + utilrand.String(5)
	}
	return w.held.reserve(ctx, sbs, pod.Name, username, true, dryRun)
}

// stampNewPod gives a new pool Pod the annotation that tells the sandbox
// runtime what to keep across hibernation.
func stampNewPod(pod *corev1.Pod, sbs *agentsv1alpha1.SandboxSet) {
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations[agentsv1alpha1.AnnotationPersistentContents] = joinContents(sbs.Spec.PersistentContents)
}

func joinContents(contents []agentsv1alpha1.PersistentContent) string {
	parts := make([]string, len(contents))
	for i, c := range contents {
		parts[i] = string(c)
	}
	return strings.Join(parts, ",")
}

// SetupWithManager registers the Pod webhook.
func (w *PodWebhook) SetupWithManager(mgr ctrl.Manager) error {
	w.decoder = admission.NewDecoder(mgr.GetScheme())
	if w.now == nil {
		w.now = time.Now
	}
	w.templates = newTemplateSpecs(w.Client)
	// Before the manager starts: an index cannot be added to a running informer.
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &corev1.Pod{}, holderIndex, holderIndexKeys); err != nil {
		return fmt.Errorf("indexing pool Pods by holder: %w", err)
	}
	w.held = &heldLimit{client: w.Client, apiReader: w.APIReader, now: w.now}
	mgr.GetWebhookServer().Register("/mutate--v1-pod", podReviews{
		webhook: &webhook.Admission{Handler: w},
		log:     mgr.GetLogger().WithName("pod-webhook"),
	})
	return nil
}
