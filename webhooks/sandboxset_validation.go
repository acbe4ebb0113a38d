package webhooks

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
)

// MaxNameLength keeps a SandboxSet's name a valid label value on its Pods,
// and its Pods' names (name, a dash and a 5-character suffix) within 63.
const MaxNameLength = 57

var supportedContents = []string{
	string(agentsv1alpha1.PersistentContentFilesystem),
	string(agentsv1alpha1.PersistentContentIP),
	string(agentsv1alpha1.PersistentContentMemory),
}

// validateSandboxSet returns every problem with a SandboxSet, each with its
// field path. old is nil on create. maxReplicas is the operator's ceiling on
// pool size; an update may keep a pool above a since-lowered ceiling, but
// not grow it.
func validateSandboxSet(sbs, old *agentsv1alpha1.SandboxSet, maxReplicas int32) field.ErrorList {
	var errs field.ErrorList
	// The webhook, not the schema: a CRD's schema cannot point a rule at
	// metadata.name, and a rule on the whole object reports no field.
	if len(sbs.Name) > MaxNameLength {
		errs = append(errs, field.Invalid(field.NewPath("metadata", "name"), sbs.Name, fmt.Sprintf(
			"must be at most %d characters: it is a label value on every Pod and, with a 6-character suffix, each Pod's name", MaxNameLength)))
	}
	spec := field.NewPath("spec")
	var oldReplicas *int32
	if old != nil {
		oldReplicas = ptr.To(old.Spec.DesiredReplicas())
	}
	errs = append(errs, validateReplicas(sbs.Spec.DesiredReplicas(), oldReplicas, maxReplicas, spec.Child("replicas"))...)
	errs = append(errs, validatePersistentContents(sbs.Spec.PersistentContents, spec.Child("persistentContents"))...)
	errs = append(errs, validateMaxUnavailable(sbs.Spec.UpdateStrategy.MaxUnavailable, spec.Child("updateStrategy", "maxUnavailable"))...)
	errs = append(errs, validateClaimLifetime(sbs.Spec.ClaimLifetime, spec.Child("claimLifetime"))...)
	errs = append(errs, validateTemplate(sbs, spec.Child("template"))...)
	return errs
}

// validateReplicas bounds a pool's size; oldReplicas is nil on create.
func validateReplicas(replicas int32, oldReplicas *int32, maxReplicas int32, path *field.Path) field.ErrorList {
	switch {
	case replicas < 0:
		return field.ErrorList{field.Invalid(path, replicas, "must be 0 or more")}
	case replicas > maxReplicas && (oldReplicas == nil || replicas > *oldReplicas):
		return field.ErrorList{field.Invalid(path, replicas, fmt.Sprintf(
			"must be at most %d, the operator's ceiling on pool size (manager flag --max-replicas); use several SandboxSets for a larger pool", maxReplicas))}
	}
	return nil
}

func validatePersistentContents(contents []agentsv1alpha1.PersistentContent, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	seen := sets.New[agentsv1alpha1.PersistentContent]()
	for i, c := range contents {
		switch {
		case !slices.Contains(supportedContents, string(c)):
			errs = append(errs, field.NotSupported(path.Index(i), c, supportedContents))
		case seen.Has(c):
			errs = append(errs, field.Duplicate(path.Index(i), c))
		}
		seen.Insert(c)
	}
	return errs
}

func validateMaxUnavailable(v *intstr.IntOrString, path *field.Path) field.ErrorList {
	if v == nil {
		return nil
	}
	if v.Type == intstr.Int {
		if v.IntVal < 0 {
			return field.ErrorList{field.Invalid(path, v.IntVal, "must be 0 or more")}
		}
		return nil
	}
	var percent int
	if _, err := fmt.Sscanf(v.StrVal, "%d%%", &percent); err != nil || fmt.Sprintf("%d%%", percent) != v.StrVal || percent < 0 || percent > 100 {
		return field.ErrorList{field.Invalid(path, v.StrVal, "must be a whole number of Pods or a percentage from 0% to 100%, e.g. 25%")}
	}
	return nil
}

// validateClaimLifetime wants positive durations, the default no longer
// than the maximum.
func validateClaimLifetime(l *agentsv1alpha1.ClaimLifetime, path *field.Path) field.ErrorList {
	if l == nil {
		return nil
	}
	var errs field.ErrorList
	for _, d := range []struct {
		name  string
		value *metav1.Duration
	}{{"default", l.Default}, {"max", l.Max}} {
		if d.value != nil && d.value.Duration <= 0 {
			errs = append(errs, field.Invalid(path.Child(d.name), d.value.Duration.String(), "must be a positive duration, e.g. 10m or 2h"))
		}
	}
	if len(errs) == 0 && l.Default != nil && l.Max != nil && l.Default.Duration > l.Max.Duration {
		errs = append(errs, field.Invalid(path.Child("default"), l.Default.Duration.String(),
			fmt.Sprintf("must not be longer than claimLifetime.max (%s)", l.Max.Duration)))
	}
	return errs
}

// validateTemplate checks what would keep the template from making a valid
// Pod, and keeps the operator's own keys out of the template.
func validateTemplate(sbs *agentsv1alpha1.SandboxSet, path *field.Path) field.ErrorList {
	tmpl := &sbs.Spec.Template
	meta := path.Child("metadata")
	errs := metav1validation.ValidateLabels(tmpl.Labels, meta.Child("labels"))
	errs = append(errs, apivalidation.ValidateAnnotations(tmpl.Annotations, meta.Child("annotations"))...)
	for _, key := range sortedKeys(tmpl.Labels) {
		if strings.HasPrefix(key, agentsv1alpha1.KeyPrefix) && (key != agentsv1alpha1.LabelSandboxSet || tmpl.Labels[key] != sbs.Name) {
			errs = append(errs, field.Forbidden(meta.Child("labels").Key(key), "agents.kruise.io/ labels are set by the operator on each Pod; choose another key"))
		}
	}
	for _, key := range sortedKeys(tmpl.Annotations) {
		if strings.HasPrefix(key, agentsv1alpha1.KeyPrefix) {
			errs = append(errs, field.Forbidden(meta.Child("annotations").Key(key), "agents.kruise.io/ annotations are set by the operator on each Pod; choose another key"))
		}
	}

	spec := path.Child("spec")
	if p := tmpl.Spec.RestartPolicy; p != "" && p != corev1.RestartPolicyAlways {
		errs = append(errs, field.NotSupported(spec.Child("restartPolicy"), p, []corev1.RestartPolicy{corev1.RestartPolicyAlways}))
	}
	if len(tmpl.Spec.Containers) == 0 {
		errs = append(errs, field.Required(spec.Child("containers"), "a sandbox needs at least one container"))
	}
	names := sets.New[string]()
	check := func(c *corev1.Container, p *field.Path) {
		switch {
		case c.Name == "":
			errs = append(errs, field.Required(p.Child("name"), "every container needs a name"))
		case names.Has(c.Name):
			errs = append(errs, field.Duplicate(p.Child("name"), c.Name))
		default:
			for _, msg := range validation.IsDNS1123Label(c.Name) {
				errs = append(errs, field.Invalid(p.Child("name"), c.Name, msg))
			}
		}
		names.Insert(c.Name)
		if strings.TrimSpace(c.Image) == "" {
			errs = append(errs, field.Required(p.Child("image"), "every container needs an image"))
		}
	}
	for i := range tmpl.Spec.InitContainers {
		check(&tmpl.Spec.InitContainers[i], spec.Child("initContainers").Index(i))
	}
	for i := range tmpl.Spec.Containers {
		check(&tmpl.Spec.Containers[i], spec.Child("containers").Index(i))
	}
	return errs
}

func sortedKeys(m map[string]string) []string {
	return slices.Sorted(func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	})
}
