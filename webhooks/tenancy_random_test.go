package webhooks

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
	"github.com/sandboxset/warmpool/test/envtestenv"
	"github.com/sandboxset/warmpool/test/kubelet"
)

// TestAgentWritesToPoolPods sends writes to a warm sandbox and to a claimed
// one, as the holder or as another agent, through a real API server with the
// webhooks and admission policies installed: first the attacks of the
// tenancy table and what a holder may do, then random writes drawn from the
// keys, values and operations that matter. Every write is a server-side dry
// run, so the Pods stay as they are and each answer is the Pod as it would
// have been stored. Whatever is admitted must change no protected field: not
// the spec, status, owners or finalizers, no agents.kruise.io/ key, nothing
// on a warm sandbox, nothing at all for a non-holder, unless it is a valid
// claim of the warm sandbox. And a holder's own labels, or a plain claim,
// must not be refused by a tenancy rule.
//
// TENANCY_WRITES sets how many random writes (default 1500); TENANCY_SEED
// replays a run.
func TestAgentWritesToPoolPods(t *testing.T) {
	fx := startTenancyFixture(t)
	for i, w := range tenancySeeds() {
		t.Run(fmt.Sprintf("seed %d %s", i, opNames[w.op]), func(t *testing.T) { fx.check(t, w) })
	}
	seed := time.Now().UnixNano()
	if s := os.Getenv("TENANCY_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseInt(s, 10, 64); err != nil {
			t.Fatalf("TENANCY_SEED: %v", err)
		}
	}
	n := 1500
	if s := os.Getenv("TENANCY_WRITES"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			t.Fatalf("TENANCY_WRITES: %v", err)
		}
	}
	t.Logf("%d random writes with TENANCY_SEED=%d", n, seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	t.Run("random", func(t *testing.T) {
		admitted := 0
		for range n {
			if fx.check(t, randomWrite(rng)) {
				admitted++
			}
			if t.Failed() {
				return
			}
		}
		t.Logf("%d of %d random writes admitted", admitted, n)
	})
}

// tenancySeeds are the attacks of the tenancy table, and what a holder may do.
func tenancySeeds() []write {
	big := strings.Repeat("x", 4096)
	return []write{
		{target: warm, who: other, image: "evil.example/backdoor:1"},
		{target: held, who: other, image: "evil.example/backdoor:1"},
		{target: held, who: holder, image: "evil.example/backdoor:1"},
		{target: warm, who: other, deadline: 1},
		{target: warm, who: other, owners: 2},
		{target: warm, who: other, owners: 1},
		{target: warm, who: other, finalizer: "example.com/never"},
		{target: warm, who: other, annotationKey: agentsv1alpha1.AnnotationPersistentContents, annotationValue: "filesystem"},
		{target: warm, who: other, annotationKey: "flood", annotationValue: big},
		{target: warm, who: other, op: opDelete},
		{target: held, who: other, op: opDelete},
		{target: held, who: other, labelKey: agentsv1alpha1.LabelClaimedBy, labelValue: "agent-1"},
		{target: warm, who: other, labelKey: agentsv1alpha1.LabelClaimedBy, labelValue: "agent-2", annotationKey: agentsv1alpha1.AnnotationClaimedByUser, annotationValue: "agent-a"},
		{target: warm, who: other, labelKey: agentsv1alpha1.LabelClaimedBy, labelValue: "agent-2"},
		// Found by the random writes: a claim that drops the pool's empty
		// persistent-contents annotation.
		{target: warm, who: other, labelKey: agentsv1alpha1.LabelClaimedBy, labelValue: "agent-2", annotationKey: agentsv1alpha1.AnnotationPersistentContents},
		{target: warm, who: other, op: opStatus, phase: "Failed"},
		{target: warm, who: other, op: opEphemeral, image: "busybox"},
		{target: warm, who: other, op: opResize},
		{target: warm, who: other, op: opEvict},
		{target: held, who: other, op: opEvict},
		{target: held, who: holder, labelKey: "task", labelValue: "build", annotationKey: "note", annotationValue: big},
		{target: held, who: holder, labelKey: agentsv1alpha1.LabelState, labelValue: "available"},
		{target: held, who: holder, op: opDelete},
		{target: held, who: holder, op: opEvict},
	}
}

// randomWrite draws a write from the keys, values and operations that
// matter to the rules, plus some that do not.
func randomWrite(rng *rand.Rand) write {
	pick := func(options ...string) string { return options[rng.IntN(len(options))] }
	keys := []string{"", "", agentsv1alpha1.LabelClaimedBy, agentsv1alpha1.LabelState, agentsv1alpha1.LabelSandboxSet, agentsv1alpha1.LabelRevision,
		agentsv1alpha1.AnnotationClaimedAt, agentsv1alpha1.AnnotationClaimedByUser, agentsv1alpha1.AnnotationPersistentContents,
		agentsv1alpha1.KeyPrefix + "shutdown-time", agentsv1alpha1.KeyPrefix + "x", "task", "note", "example.com/owner"}
	values := []string{"", "agent-1", "agent-2", "agent-a", "agent-b", "available", "claimed", "creating", "demo", "other",
		"ip", "filesystem", "2030-01-01T00:00:00Z", "2020-01-01T00:00:00Z", "2030-01-01T00:00:00+01:00", strings.Repeat("x", rng.IntN(3000))}
	w := write{
		target: rng.IntN(2), who: rng.IntN(2), op: []int{opPatch, opPatch, opPatch, opStatus, opEphemeral, opResize, opDelete, opEvict}[rng.IntN(8)],
		labelKey: pick(keys...), labelValue: pick(values...), annotationKey: pick(keys...), annotationValue: pick(values...),
		owners: rng.IntN(3) * rng.IntN(2), phase: pick("", "", "", "Running", "Failed", "Succeeded"), ready: rng.IntN(4) != 0,
	}
	if rng.IntN(4) == 0 {
		w.image = pick("evil.example/backdoor:1", "nginx:alpine", "busybox")
	}
	if rng.IntN(6) == 0 {
		w.deadline = rng.Int64N(100) + 1
	}
	if rng.IntN(6) == 0 {
		w.finalizer = "example.com/never"
	}
	return w
}

// check sends the write, judges the answer, and says whether it was admitted.
func (fx *tenancyFixture) check(t *testing.T, w write) bool {
	t.Helper()
	ctx := context.Background()
	name := fx.pods[w.target]
	orig := &corev1.Pod{}
	if err := fx.admin.Get(ctx, types.NamespacedName{Namespace: fx.ns, Name: name}, orig); err != nil {
		t.Fatalf("reading Pod %s: %v", name, err)
	}
	user := fx.users[w.who]
	got, err := w.send(ctx, fx.clients[w.who], orig)
	if err != nil {
		if w.harmless(orig, user) && strings.Contains(err.Error(), "rule ") {
			t.Errorf("refused a harmless %s by %s on %s (%+v): %v", opNames[w.op], user, name, w, err)
		}
		return false // refused: nothing changed
	}
	if problem := judge(orig, got, user, w.op); problem != "" {
		t.Errorf("admitted %s by %s on %s (%+v): %s", opNames[w.op], user, name, w, problem)
	}
	return true
}

// What a write does, and to whom.
const (
	warm, held    = 0, 1 // target
	holder, other = 0, 1 // who: agent-a holds the claimed sandbox, agent-b none

	opPatch, opStatus, opEphemeral, opResize, opDelete, opEvict = 0, 1, 2, 3, 4, 5
)

var opNames = []string{"patch", "status patch", "ephemeralcontainers patch", "resize", "delete", "eviction"}

// write is one request: its operation and what its patch sets.
type write struct {
	target, who, op                                             int
	labelKey, labelValue, annotationKey, annotationValue, image string
	deadline                                                    int64
	owners                                                      int // 0 leave, 1 drop all, 2 point at the Pod itself
	finalizer, phase                                            string
	ready                                                       bool
}

// send makes the write as a dry run and returns the Pod as it would be
// stored, or nil for a delete or eviction.
func (w write) send(ctx context.Context, c client.Client, pod *corev1.Pod) (*corev1.Pod, error) {
	dryRun := []string{metav1.DryRunAll}
	switch w.op {
	case opDelete:
		return nil, c.Delete(ctx, pod.DeepCopy(), client.DryRunAll)
	case opEvict:
		return nil, c.SubResource("eviction").Create(ctx, pod.DeepCopy(), &policyv1.Eviction{DeleteOptions: &metav1.DeleteOptions{DryRun: dryRun}})
	}
	body, err := json.Marshal(w.patch(pod))
	if err != nil {
		return nil, err
	}
	got := pod.DeepCopy()
	patch := client.RawPatch(types.StrategicMergePatchType, body)
	if w.op == opPatch {
		return got, c.Patch(ctx, got, patch, client.DryRunAll)
	}
	sub := map[int]string{opStatus: "status", opEphemeral: "ephemeralcontainers", opResize: "resize"}[w.op]
	return got, c.SubResource(sub).Patch(ctx, got, patch, &client.SubResourcePatchOptions{PatchOptions: client.PatchOptions{DryRun: dryRun}})
}

func (w write) patch(pod *corev1.Pod) map[string]any {
	meta, spec, status := map[string]any{}, map[string]any{}, map[string]any{}
	if w.labelKey != "" {
		meta["labels"] = map[string]any{w.labelKey: nullIfEmpty(w.labelValue)}
	}
	if w.annotationKey != "" {
		meta["annotations"] = map[string]any{w.annotationKey: nullIfEmpty(w.annotationValue)}
	}
	switch w.owners {
	case 1:
		meta["ownerReferences"] = []any{map[string]any{"$patch": "replace"}}
	case 2:
		meta["ownerReferences"] = []any{map[string]any{"apiVersion": "v1", "kind": "Pod", "name": pod.Name, "uid": string(pod.UID)}}
	}
	if w.finalizer != "" {
		meta["finalizers"] = []any{w.finalizer}
	}
	switch {
	case w.op == opEphemeral:
		spec["ephemeralContainers"] = []any{map[string]any{"name": "debug", "image": w.image + "debug"}}
	case w.op == opResize:
		spec["containers"] = []any{map[string]any{"name": "sandbox", "resources": map[string]any{"requests": map[string]any{"cpu": "20m"}}}}
	case w.image != "":
		spec["containers"] = []any{map[string]any{"name": "sandbox", "image": w.image}}
	}
	if w.deadline > 0 {
		spec["activeDeadlineSeconds"] = w.deadline
	}
	if w.phase != "" {
		status["phase"] = w.phase
	}
	if w.ready != agentsv1alpha1.IsPodReady(pod) {
		readiness := corev1.ConditionFalse
		if w.ready {
			readiness = corev1.ConditionTrue
		}
		status["conditions"] = []any{map[string]any{"type": "Ready", "status": readiness}}
	}
	return map[string]any{"metadata": meta, "spec": spec, "status": status}
}

// harmless says whether the write is one the tenancy rules must let
// through: the holder's own labels and annotations on its sandbox, or a
// plain claim of a warm one. (The API server may still refuse it for its
// own reasons, such as an invalid key.)
func (w write) harmless(pod *corev1.Pod, user string) bool {
	if w.op != opPatch || w.image != "" || w.deadline > 0 || w.owners != 0 || w.finalizer != "" || w.phase != "" || w.ready != agentsv1alpha1.IsPodReady(pod) {
		return false
	}
	if pod.Annotations[agentsv1alpha1.AnnotationClaimedByUser] == user {
		return !strings.HasPrefix(w.labelKey, agentsv1alpha1.KeyPrefix) && !strings.HasPrefix(w.annotationKey, agentsv1alpha1.KeyPrefix)
	}
	return pod.Labels[agentsv1alpha1.LabelClaimedBy] == "" && w.labelKey == agentsv1alpha1.LabelClaimedBy && w.labelValue != "" && w.annotationKey == ""
}

func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// judge says what an admitted write did that it must not have, or "".
func judge(orig, got *corev1.Pod, user string, op int) string {
	holder, holderUser := orig.Labels[agentsv1alpha1.LabelClaimedBy], orig.Annotations[agentsv1alpha1.AnnotationClaimedByUser]
	if holder != "" && user != holderUser {
		return fmt.Sprintf("the sandbox is held by %s (%s)", holder, holderUser)
	}
	if op == opDelete || op == opEvict {
		if holder == "" {
			return "a warm sandbox was deleted"
		}
		return ""
	}
	switch {
	case !equality.Semantic.DeepEqual(orig.Spec, got.Spec):
		return "the spec changed"
	case !equality.Semantic.DeepEqual(orig.Status, got.Status):
		return "the status changed"
	case !equality.Semantic.DeepEqual(orig.Finalizers, got.Finalizers):
		return "the finalizers changed"
	}
	if holder == "" && got.Labels[agentsv1alpha1.LabelClaimedBy] != "" {
		return judgeClaim(orig, got, user)
	}
	origAnnotations, gotAnnotations := operatorEntries(orig.Annotations), operatorEntries(got.Annotations)
	if holder != "" && op == opPatch && origAnnotations[agentsv1alpha1.AnnotationShutdownTime] != gotAnnotations[agentsv1alpha1.AnnotationShutdownTime] {
		// The holder's renewal: any valid shutdown time.
		if problem := judgeShutdownTime(got); problem != "" {
			return problem
		}
		delete(origAnnotations, agentsv1alpha1.AnnotationShutdownTime)
		delete(gotAnnotations, agentsv1alpha1.AnnotationShutdownTime)
	}
	switch {
	case !equality.Semantic.DeepEqual(orig.OwnerReferences, got.OwnerReferences):
		return "the owner references changed"
	case !maps.Equal(operatorEntries(orig.Labels), operatorEntries(got.Labels)):
		return "an agents.kruise.io/ label changed"
	case !maps.Equal(origAnnotations, gotAnnotations):
		return "an agents.kruise.io/ annotation changed"
	case holder == "" && !(maps.Equal(orig.Labels, got.Labels) && maps.Equal(orig.Annotations, got.Annotations)):
		return "a warm sandbox's metadata changed"
	}
	return ""
}

// judgeClaim checks an admitted claim of a warm sandbox: complete, made by
// its requester, and changing nothing else of the operator's.
func judgeClaim(orig, got *corev1.Pod, user string) string {
	if !agentsv1alpha1.IsPodReady(orig) || !isControlledByItsPool(orig) {
		return "a Pod that was not claimable was claimed"
	}
	wantLabels := operatorEntries(orig.Labels)
	wantLabels[agentsv1alpha1.LabelClaimedBy] = got.Labels[agentsv1alpha1.LabelClaimedBy]
	wantLabels[agentsv1alpha1.LabelState] = string(agentsv1alpha1.StateClaimed)
	wantAnnotations := operatorEntries(orig.Annotations)
	wantAnnotations[agentsv1alpha1.AnnotationClaimedAt] = got.Annotations[agentsv1alpha1.AnnotationClaimedAt]
	wantAnnotations[agentsv1alpha1.AnnotationClaimedByUser] = user
	claimedAt, err := time.Parse(time.RFC3339Nano, got.Annotations[agentsv1alpha1.AnnotationClaimedAt])
	if err != nil {
		return fmt.Sprintf("the claim time %q is not a time", got.Annotations[agentsv1alpha1.AnnotationClaimedAt])
	}
	wantAnnotations[agentsv1alpha1.AnnotationMaxShutdownTime] = agentsv1alpha1.FormatShutdownTime(claimedAt.Add(fixtureMaxLifetime))
	if shutdown, ok := got.Annotations[agentsv1alpha1.AnnotationShutdownTime]; ok {
		if problem := judgeShutdownTime(got); problem != "" {
			return problem
		}
		wantAnnotations[agentsv1alpha1.AnnotationShutdownTime] = shutdown
	}
	switch {
	case !maps.Equal(wantLabels, operatorEntries(got.Labels)):
		return fmt.Sprintf("the claim left operator labels %v", operatorEntries(got.Labels))
	case !maps.Equal(wantAnnotations, operatorEntries(got.Annotations)):
		return fmt.Sprintf("the claim left operator annotations %v", operatorEntries(got.Annotations))
	case len(got.OwnerReferences) != 0:
		return fmt.Sprintf("the claimed Pod kept owners %v", got.OwnerReferences)
	}
	return ""
}

// judgeShutdownTime checks an admitted shutdown time: a valid time in the
// future, no later than the Pod's maximum.
func judgeShutdownTime(pod *corev1.Pod) string {
	value, ok := pod.Annotations[agentsv1alpha1.AnnotationShutdownTime]
	maxValue, hasMax := pod.Annotations[agentsv1alpha1.AnnotationMaxShutdownTime]
	if !ok {
		if hasMax {
			return "the shutdown time of a sandbox with a maximum was removed"
		}
		return ""
	}
	at, err := agentsv1alpha1.ParseShutdownTime(value)
	switch {
	case err != nil:
		return fmt.Sprintf("an invalid shutdown time %q", value)
	case !at.After(time.Now().Add(-time.Minute)):
		return fmt.Sprintf("a past shutdown time %q", value)
	}
	if limit, err := agentsv1alpha1.ParseShutdownTime(maxValue); hasMax && (err != nil || at.After(limit)) {
		return fmt.Sprintf("shutdown time %q beyond the maximum %q", value, maxValue)
	}
	return ""
}

func operatorEntries(m map[string]string) map[string]string {
	out := map[string]string{}
	for key, value := range m {
		if strings.HasPrefix(key, agentsv1alpha1.KeyPrefix) {
			out[key] = value
		}
	}
	return out
}

// fixtureMaxLifetime is the fixture pool's claimLifetime.max.
const fixtureMaxLifetime = 24 * time.Hour

// tenancyFixture is a pool of two in its own namespace: one warm sandbox,
// one claimed by agent-a; agent-b holds none. Both hold the agent Role, and
// a broader one for subresources, evictions and creation.
type tenancyFixture struct {
	admin   client.Client
	ns      string
	pods    [2]string // by target
	users   [2]string // by who
	clients [2]client.Client
}

func startTenancyFixture(t *testing.T) *tenancyFixture {
	t.Helper()
	env, err := envtestenv.Start(envtestenv.Options{RegisterWebhooks: func(mgr ctrl.Manager) error {
		return SetupWithManager(mgr, Options{MaxReplicas: 10, ManagerUsername: envtestenv.ManagerUser, AdmissionParams: envtestenv.AdmissionParams})
	}})
	if err != nil {
		t.Fatalf("starting the API server: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stopping the API server: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	fx := &tenancyFixture{admin: env.Admin, users: [2]string{"agent-a", "agent-b"}}
	if err := fx.setUp(ctx, env); err != nil {
		t.Fatalf("setting up the pool: %v", err)
	}
	return fx
}

func (fx *tenancyFixture) setUp(ctx context.Context, env *envtestenv.Env) error {
	var err error
	if fx.ns, err = env.NewNamespace(ctx, "tenancy-fuzz-"); err != nil {
		return err
	}
	broad := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Namespace: fx.ns, Name: "broad-agent"},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"pods/status", "pods/ephemeralcontainers", "pods/resize"}, Verbs: []string{"patch"}},
			{APIGroups: []string{""}, Resources: []string{"pods/eviction"}, Verbs: []string{"create"}},
		},
	}
	if err := fx.admin.Create(ctx, broad); err != nil {
		return err
	}
	for i, user := range fx.users {
		if err := env.BindAgentRole(ctx, fx.ns, user); err != nil {
			return err
		}
		if err := env.BindRole(ctx, fx.ns, broad.Name, user); err != nil {
			return err
		}
		if fx.clients[i], err = env.UserClient(user); err != nil {
			return err
		}
	}
	sbs := &agentsv1alpha1.SandboxSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: fx.ns, Name: "demo"},
		Spec: agentsv1alpha1.SandboxSetSpec{
			Replicas: ptr.To[int32](2), Template: newSandboxSet(fx.ns, "demo", 2).Spec.Template,
			// A maximum, so that renewals past it are among the writes.
			ClaimLifetime: &agentsv1alpha1.ClaimLifetime{Max: &metav1.Duration{Duration: fixtureMaxLifetime}},
		},
	}
	if err := fx.admin.Create(ctx, sbs); err != nil {
		return err
	}
	pods, err := fx.waitForPods(ctx, 2, "")
	if err != nil {
		return err
	}
	for i := range pods {
		if err := kubelet.SetReady(ctx, fx.admin, &pods[i], true); err != nil {
			return err
		}
	}
	if pods, err = fx.waitForPods(ctx, 2, agentsv1alpha1.StateAvailable); err != nil {
		return err
	}
	fx.pods = [2]string{pods[0].Name, pods[1].Name}
	claim := fmt.Appendf(nil, `{"metadata":{"labels":{%q:"agent-1"}}}`, agentsv1alpha1.LabelClaimedBy)
	return fx.clients[0].Patch(ctx, &pods[1], client.RawPatch(types.MergePatchType, claim))
}

// waitForPods waits for n Pods in the namespace, in state if not empty.
func (fx *tenancyFixture) waitForPods(ctx context.Context, n int, state agentsv1alpha1.SandboxState) ([]corev1.Pod, error) {
	var pods []corev1.Pod
	err := wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		list := &corev1.PodList{}
		opts := []client.ListOption{client.InNamespace(fx.ns)}
		if state != "" {
			opts = append(opts, client.MatchingLabels{agentsv1alpha1.LabelState: string(state)})
		}
		if err := fx.admin.List(ctx, list, opts...); err != nil {
			return false, err
		}
		pods = list.Items
		return len(pods) == n, nil
	})
	return pods, err
}
