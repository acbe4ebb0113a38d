package webhooks

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
)

// templateSpecs checks cold claims against their pool's template. A Pod
// reaches admission already defaulted by the API server and changed by its
// built-in admission plugins, so it is compared with a Pod built from the
// template and put through the same steps: a dry-run creation, once per
// template revision.
type templateSpecs struct {
	c client.Client

	mu    sync.Mutex
	specs map[templateKey]*corev1.PodSpec
}

type templateKey struct {
	sandboxSet types.UID
	revision   string
}

// maxTemplateSpecs bounds the remembered specs; past it they are forgotten
// and dry-run again on the next cold claim of each.
const maxTemplateSpecs = 256

func newTemplateSpecs(c client.Client) *templateSpecs {
	return &templateSpecs{c: c, specs: map[templateKey]*corev1.PodSpec{}}
}

// compare returns what makes an agent's cold claim pod differ from what the
// SandboxSet's template makes: anything but the holder label and the
// agent's own labels and annotations.
func (t *templateSpecs) compare(ctx context.Context, sbs *agentsv1alpha1.SandboxSet, pod *corev1.Pod) (field.ErrorList, error) {
	errs := coldClaimMetadata(sbs, pod)
	key := templateKey{sandboxSet: sbs.UID, revision: sbs.Spec.Revision()}
	want, err := t.spec(ctx, sbs, key, false)
	if err != nil {
		return nil, err
	}
	diff := specDifference(want, &pod.Spec)
	if diff != nil {
		// The namespace's defaults (a LimitRange, say) may have changed
		// since the template was last dry-run: look once more.
		if want, err = t.spec(ctx, sbs, key, true); err != nil {
			return nil, err
		}
		diff = specDifference(want, &pod.Spec)
	}
	if diff != nil {
		errs = append(errs, field.Invalid(diff.path, diff.got, fmt.Sprintf(
			"rule cold-claim-template: a sandbox created from SandboxSet %s must be its template at revision %s, which has %s here",
			sbs.Name, key.revision, diff.want)))
	}
	return errs, nil
}

// spec returns the template's Pod spec as the API server would store it.
func (t *templateSpecs) spec(ctx context.Context, sbs *agentsv1alpha1.SandboxSet, key templateKey, refresh bool) (*corev1.PodSpec, error) {
	t.mu.Lock()
	spec, ok := t.specs[key]
	t.mu.Unlock()
	if ok && !refresh {
		return spec, nil
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:    sbs.Namespace,
			GenerateName: sbs.Name + "-template-",
			// Without the pool label: the Pod webhook does not see it.
			Labels:      withoutOperatorKeys(sbs.Spec.Template.Labels),
			Annotations: withoutOperatorKeys(sbs.Spec.Template.Annotations),
		},
		Spec: *sbs.Spec.Template.Spec.DeepCopy(),
	}
	if err := t.c.Create(ctx, pod, client.DryRunAll); err != nil {
		return nil, fmt.Errorf("dry-running a Pod from the template: %w", err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.specs) >= maxTemplateSpecs {
		clear(t.specs)
	}
	t.specs[key] = &pod.Spec
	return &pod.Spec, nil
}

// coldClaimMetadata checks what a cold claim carries besides its spec: the
// template's own labels and annotations, no agents.kruise.io/ keys but the
// pool, revision and holder labels (the webhook stamps the rest), and no
// owners or finalizers, which no claimed warm sandbox has either.
func coldClaimMetadata(sbs *agentsv1alpha1.SandboxSet, pod *corev1.Pod) field.ErrorList {
	var errs field.ErrorList
	rule := fmt.Sprintf("rule cold-claim-template: a sandbox created from SandboxSet %s carries its template's", sbs.Name)
	for _, m := range []struct {
		path      *field.Path
		want, got map[string]string
		allowed   []string
	}{
		{labelsPath, sbs.Spec.Template.Labels, pod.Labels,
			[]string{agentsv1alpha1.LabelSandboxSet, agentsv1alpha1.LabelRevision, agentsv1alpha1.LabelClaimedBy, agentsv1alpha1.LabelState}},
		{annotationsPath, sbs.Spec.Template.Annotations, pod.Annotations, []string{agentsv1alpha1.AnnotationShutdownTime}},
	} {
		for key, value := range withoutOperatorKeys(m.want) {
			if got, ok := m.got[key]; !ok || got != value {
				errs = append(errs, field.Invalid(m.path.Key(key), got, fmt.Sprintf("%s %q", rule, value)))
			}
		}
		for key := range m.got {
			if strings.HasPrefix(key, agentsv1alpha1.KeyPrefix) && !slices.Contains(m.allowed, key) {
				errs = append(errs, field.Forbidden(m.path.Key(key), "rule claim-keys: set by the operator and cannot be chosen"))
			}
		}
	}
	if len(pod.OwnerReferences) > 0 {
		errs = append(errs, field.Forbidden(field.NewPath("metadata", "ownerReferences"), "rule cold-claim-template: a claimed sandbox has no owner"))
	}
	if len(pod.Finalizers) > 0 {
		errs = append(errs, field.Forbidden(field.NewPath("metadata", "finalizers"), "rule cold-claim-template: a sandbox has no finalizers"))
	}
	return errs
}

func withoutOperatorKeys(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for key, value := range m {
		if !strings.HasPrefix(key, agentsv1alpha1.KeyPrefix) {
			out[key] = value
		}
	}
	return out
}

// difference is the first place two specs differ.
type difference struct {
	path      *field.Path
	want, got any
}

// specDifference compares a cold claim's spec with the template's, both as
// the API server made them. A dry-run Pod is never scheduled, and the
// ServiceAccount admission plugin names its token volume at random, so
// those are set aside.
func specDifference(want, got *corev1.PodSpec) *difference {
	w, g := normalizeSpec(want), normalizeSpec(got)
	if reflect.DeepEqual(w, g) {
		return nil
	}
	var wantJSON, gotJSON any
	if err := roundTrip(w, &wantJSON); err != nil {
		return &difference{path: field.NewPath("spec"), want: err.Error()}
	}
	if err := roundTrip(g, &gotJSON); err != nil {
		return &difference{path: field.NewPath("spec"), got: err.Error()}
	}
	return firstDifference(field.NewPath("spec"), wantJSON, gotJSON)
}

const serviceAccountTokenVolumePrefix = "kube-api-access-"

func normalizeSpec(spec *corev1.PodSpec) *corev1.PodSpec {
	spec = spec.DeepCopy()
	spec.NodeName = ""
	rename := func(name string) string {
		if strings.HasPrefix(name, serviceAccountTokenVolumePrefix) {
			return serviceAccountTokenVolumePrefix
		}
		return name
	}
	for i := range spec.Volumes {
		spec.Volumes[i].Name = rename(spec.Volumes[i].Name)
	}
	for _, containers := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
		for i := range containers {
			for j := range containers[i].VolumeMounts {
				containers[i].VolumeMounts[j].Name = rename(containers[i].VolumeMounts[j].Name)
			}
		}
	}
	return spec
}

func roundTrip(in, out any) error {
	data, err := json.Marshal(in)
	if err != nil {
		return err
	}
	return json.Unmarshal(data, out)
}

// firstDifference walks two decoded JSON values in key order and returns
// where they first differ, or nil.
func firstDifference(path *field.Path, want, got any) *difference {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			break
		}
		keys := make([]string, 0, len(w)+len(g))
		for key := range w {
			keys = append(keys, key)
		}
		for key := range g {
			keys = append(keys, key)
		}
		slices.Sort(keys)
		for _, key := range slices.Compact(keys) {
			if d := firstDifference(path.Child(key), w[key], g[key]); d != nil {
				return d
			}
		}
		return nil
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			break
		}
		for i := range w {
			if d := firstDifference(path.Index(i), w[i], g[i]); d != nil {
				return d
			}
		}
		return nil
	}
	if reflect.DeepEqual(want, got) {
		return nil
	}
	return &difference{path: path, want: describe(want), got: got}
}

// describe says what the template has at a place, for a refusal message.
func describe(v any) string {
	if v == nil {
		return "nothing"
	}
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(data)
}
