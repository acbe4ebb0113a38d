package main

// mutants are single-line bugs a real regression could look like. Each is
// an exact text, found once in its file, and what replaces it; the owning
// package's tests must fail with it in place.
var mutants = []mutant{
	// The claim webhook and the admission policies (webhooks' suites).
	{"webhooks/claim.go", "\tcase !agentsv1alpha1.IsPodReady(pod):", "\tcase false:", "a claim of a Pod that is not Ready is allowed"},
	{"webhooks/claim.go", "\tcase !isControlledByItsPool(pod):", "\tcase false:", "a claim of a Pod its pool does not control is allowed"},
	{"webhooks/claim.go", "\tcase oldHolder != \"\":\n", "\tcase oldHolder != \"\" && false:\n", "a claimed Pod can be claimed again"},
	{"webhooks/claim.go", "\tcase !byManager:", "\tcase false:", "agents may move a warm Pod's state"},
	{"webhooks/claim.go", "\t\tif !isSandboxSetRef(ref.APIVersion, ref.Kind) {", "\t\tif true {", "a claim keeps the SandboxSet's owner reference"},
	{"webhooks/pod_reviews.go", "\t\treq.OldObject = runtime.RawExtension{Object: review.Request.OldObject}", "\t\treq.OldObject = runtime.RawExtension{Object: review.Request.Object}", "the Pod webhook judges an update against itself"},
	{"webhooks/claim.go", "\tpod.Annotations[agentsv1alpha1.AnnotationClaimedByUser] = username\n", "\n", "a claim records no identity"},
	{"webhooks/claim.go", "\tcase !at.After(now):", "\tcase false:", "a past shutdown time is allowed"},
	{"webhooks/claim.go", "\tif err == nil && at.After(limit) {", "\tif err == nil && at.After(limit.Add(time.Hour)) {", "a shutdown time an hour past the maximum is allowed"},
	{"webhooks/claim.go", "\treturn had != has || oldValue != newValue", "\treturn had != has && false || oldValue != newValue", "a claim may drop an empty operator annotation"},
	{"webhooks/cold_claim.go", "\tdiff := specDifference(want, &pod.Spec)\n", "\tdiff := (*difference)(nil)\n", "a cold claim's spec is not compared with the template"},
	{"webhooks/pod_webhook.go", "\t\tif !byManager {\n\t\t\treturn invalid(podKind, pod.Name, field.ErrorList{field.Forbidden(poolPath,", "\t\tif false {\n\t\t\treturn invalid(podKind, pod.Name, field.ErrorList{field.Forbidden(poolPath,", "anyone may create warm Pods"},
	{"webhooks/sandboxset_validation.go", "\tcase replicas < 0:", "\tcase replicas < -1:", "replicas of -1 are allowed"},
	{"webhooks/sandboxset_validation.go", "\tif p := tmpl.Spec.RestartPolicy; p != \"\" && p != corev1.RestartPolicyAlways {", "\tif p := tmpl.Spec.RestartPolicy; false && p != corev1.RestartPolicyAlways {", "any restart policy is allowed"},
	{"webhooks/eviction_webhook.go", "\tif holder != \"\" && (holderUser == \"\" || holderUser == req.UserInfo.Username) {", "\tif holder != \"\" {", "anyone may evict a claimed sandbox"},
	{"config/policies/pool_pods.yaml", "object.spec == oldObject.spec", "object.spec == object.spec", "a pool Pod's spec may change"},
	{"config/policies/pool_pods.yaml", "- expression: request.operation != 'DELETE' || variables.holder != ''", "- expression: request.operation != 'DELETE' || variables.holder == ''", "warm Pods may be deleted by anyone"},
	{"config/policies/pool_pods.yaml", "variables.holder == '' || variables.holderUser == '' || request.userInfo.username == variables.holderUser", "variables.holder == '' || variables.holderUser == '' || variables.holderUser != ''", "anyone may change a claimed sandbox"},

	// The controllers (controllers' suite).
	{"controllers/pool.go", "\texcess := len(p.active) + p.pendingCreates - desired\n", "\texcess := len(p.active) + p.pendingCreates - desired - 1\n", "the plan keeps one Pod too many"},
	{"controllers/pool.go", "\tbudget := maxUnavailable - max(0, desired-available)\n", "\tbudget := maxUnavailable\n", "a rollout ignores what is already unavailable"},
	{"controllers/sandboxset_controller.go", "\tr.expectations.expectCreations(key, names)\n", "\n", "creations are not expected before they are sent"},
	{"controllers/sandboxset_controller.go", "\t\terr := r.Delete(ctx, pod, client.Preconditions{UID: &pod.UID, ResourceVersion: &pod.ResourceVersion})\n\t\tpodOperations.WithLabelValues(\"delete\"", "\t\terr := r.Delete(ctx, pod)\n\t\tpodOperations.WithLabelValues(\"delete\"", "a pool deletion carries no preconditions"},
	{"controllers/sandboxset_controller.go", "\terrs := []error{r.releaseClaimed(ctx, sbs, p.claimed)}", "\terrs := []error{r.releaseClaimed(ctx, sbs, nil)}", "claimed Pods are not released"},
	{"controllers/sandboxset_controller.go", "\t\ttodo.create = min(todo.create, 1)", "\t\ttodo.create = min(todo.create, 100)", "a refused pass does not probe with one creation"},
	{"controllers/sandboxset_controller.go", "\tdeferred := refusal != nil && retryIn > 0 && todo.create > 0", "\tdeferred := false", "Pod events cut a refusal's backoff short"},
	{"controllers/sandboxset_controller.go", "\tif fresh.UID != sbs.UID || fresh.DeletionTimestamp != nil {", "\tif false {", "orphans are adopted for a SandboxSet that is gone"},
	{"controllers/expiry_controller.go", "\terr := r.Delete(ctx, pod, client.Preconditions{UID: &pod.UID, ResourceVersion: &pod.ResourceVersion})", "\terr := r.Delete(ctx, pod)", "an expiry deletes a sandbox renewed meanwhile"},
	{"controllers/expiry_controller.go", "\tif wait := at.Sub(r.now()); wait > 0 {", "\tif wait := at.Sub(r.now()) - time.Second; wait > 0 {", "sandboxes expire a second early"},
	{"controllers/status.go", "\t\t\tstatus.AvailableReplicas++", "\t\t\tstatus.AvailableReplicas += 2", "availableReplicas counts double"},
	{"controllers/status_writes.go", "\treturn !ok || last.resourceVersion == resourceVersion", "\treturn !ok || last.resourceVersion != \"\"", "a status equal to a stale cached copy is not written"},
	{"controllers/status_writes.go", "\tif last.movedAt.After(due) {", "\tif false {", "a claim's status waits on the last write, not on the claim"},
	{"controllers/status.go", "\t\t\tstate.status, state.reason = \"\", \"refill\"\n", "\n", "a claim's Ready flip is written at once"},
	{"controllers/cache.go", "\tmeta.Annotations = operatorKeys(pod.Annotations)", "\tmeta.Annotations = pod.Annotations", "the cache keeps agents' annotations"},
	{"controllers/expectations.go", "\t\tif r, sent := p.relabels[pod.UID]; !sent || r.from != pod.ResourceVersion {", "\t\tif true {", "a relabel is sent again while the cache lags it"},
	{"controllers/cache.go", "\tif name == \"\" || (agentsv1alpha1.IsClaimed(pod) && metav1.GetControllerOfNoCopy(pod) == nil) {", "\tif name == \"\" {", "released claimed sandboxes stay in the pool index"},

	// The claim package (its suite).
	{"api/claim/claim.go", "\t\t{\"op\": \"test\", \"path\": statePointer, \"value\": string(agentsv1alpha1.StateAvailable)},\n", "\n", "a claim is sent without its precondition"},
	{"api/claim/claim.go", "\tif apierrors.IsConflict(err) || apierrors.IsNotFound(err) {", "\tif apierrors.IsConflict(err) {", "a claim of a sandbox deleted since the list is not retried"},
	{"api/claim/claim.go", "\t\tif a.claims == a.opts.MaxAttempts {", "\t\tif a.claims == a.opts.MaxAttempts+1 {", "one claim more than MaxAttempts is sent"},
	{"api/claim/pools.go", "\tcase !agentsv1alpha1.IsClaimed(pod):", "\tcase false:", "Release deletes warm sandboxes"},
	{"api/claim/claim.go", "\tif shutdown := a.shutdownTime(); shutdown != \"\" {\n\t\t// Every pool Pod", "\tif shutdown := a.shutdownTime(); false {\n\t\t// Every pool Pod", "a claim's TTL is not sent"},
	{"api/claim/picker.go", "\t\tw.poolSet(m.Labels[agentsv1alpha1.LabelSandboxSet]).forget(name.Name)", "\t\tw.poolSet(m.Labels[agentsv1alpha1.LabelSandboxSet]).forget(name.Namespace)", "a Picker keeps offering a sandbox that left its pool"},
}
