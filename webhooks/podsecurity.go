package webhooks

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// podSecurity judges sandbox templates and cold claims against the Pod
// Security Standards with the upstream evaluator, the one the API server's
// PodSecurity admission runs: at the stricter of the namespace's enforce
// level and the operator's minimum. Judged at kubectl apply, a template
// that breaks the level is refused with its fields, instead of every Pod
// creation failing later.
type podSecurity struct {
	evaluator policy.Evaluator
	// minimum is the operator-wide floor (manager flag --pod-security-level).
	minimum api.LevelVersion
	// apiReader reads namespaces' labels uncached: they change by hand,
	// and an apply is rare enough to afford the read.
	apiReader client.Reader
}

// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get

// DefaultPodSecurityLevel is the operator's minimum unless configured:
// baseline forbids the known privilege escalations (privileged containers,
// host namespaces, hostPath volumes, added capabilities) and breaks no
// ordinary image.
const DefaultPodSecurityLevel = string(api.LevelBaseline)

func newPodSecurity(minimum string, apiReader client.Reader) (*podSecurity, error) {
	if minimum == "" {
		minimum = DefaultPodSecurityLevel
	}
	level, err := api.ParseLevel(minimum)
	if err != nil {
		return nil, fmt.Errorf("pod security level %q: %w", minimum, err)
	}
	evaluator, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		return nil, fmt.Errorf("building the Pod Security evaluator: %w", err)
	}
	return &podSecurity{evaluator: evaluator, minimum: api.LevelVersion{Level: level, Version: api.LatestVersion()}, apiReader: apiReader}, nil
}

// podSecurityLevel is a level to judge by and where it comes from, for
// messages.
type podSecurityLevel struct {
	api.LevelVersion
	source string
}

// namespacePolicy is what a namespace's Pods are held to: enforce, raised
// to the operator's minimum, and the warn and audit levels, which become
// admission warnings.
type namespacePolicy struct {
	enforce     podSecurityLevel
	warnOrAudit []podSecurityLevel
}

// floor is the operator's minimum as a level to judge by.
func (p *podSecurity) floor() podSecurityLevel {
	return podSecurityLevel{p.minimum, "the operator's minimum, manager flag --pod-security-level"}
}

// policyFor reads the namespace's pod-security.kubernetes.io labels.
func (p *podSecurity) policyFor(ctx context.Context, namespace string) (namespacePolicy, error) {
	ns := &metav1.PartialObjectMetadata{}
	ns.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
	if err := p.apiReader.Get(ctx, types.NamespacedName{Name: namespace}, ns); err != nil {
		return namespacePolicy{}, apierrors.NewInternalError(fmt.Errorf("reading namespace %s's Pod Security labels: %w", namespace, err))
	}
	privileged := api.LevelVersion{Level: api.LevelPrivileged, Version: api.LatestVersion()}
	// Labels that do not parse make the API server enforce restricted;
	// PolicyToEvaluate returns exactly that policy.
	labels, _ := api.PolicyToEvaluate(ns.Labels, api.Policy{Enforce: privileged, Audit: privileged, Warn: privileged})
	out := namespacePolicy{enforce: p.floor()}
	if stricter(labels.Enforce, p.minimum) {
		out.enforce = podSecurityLevel{labels.Enforce, "namespace " + namespace + "'s enforce level"}
	}
	for _, l := range []podSecurityLevel{
		{labels.Warn, "namespace " + namespace + "'s warn level"},
		{labels.Audit, "namespace " + namespace + "'s audit level"},
	} {
		if stricter(l.LevelVersion, out.enforce.LevelVersion) && (len(out.warnOrAudit) == 0 || out.warnOrAudit[0].LevelVersion != l.LevelVersion) {
			out.warnOrAudit = append(out.warnOrAudit, l)
		}
	}
	return out, nil
}

// stricter says whether a holds Pods to more than b: a higher level, or
// the same level at a later version.
func stricter(a, b api.LevelVersion) bool {
	if c := api.CompareLevels(a.Level, b.Level); c != 0 {
		return c > 0
	}
	return a.Level != api.LevelPrivileged && b.Version.Older(a.Version)
}

// violations evaluates a Pod's metadata and spec at a level and returns a
// field error for each failed check, at the field it is about under spec
// (e.g. spec.template.spec). The evaluator names no fields, so each
// container is evaluated alone to tell whose fields fail, and the spec
// without containers for the Pod's own.
func (p *podSecurity) violations(level podSecurityLevel, meta *metav1.ObjectMeta, spec *corev1.PodSpec, specPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	for _, v := range p.evaluate(level, meta, spec, specPath) {
		errs = append(errs, field.Forbidden(v.path, fmt.Sprintf("rule pod-security: violates PodSecurity %q, %s: %s", level.String(), level.source, v.what)))
	}
	return errs
}

// violation is a failed check, at the field it is about.
type violation struct {
	path *field.Path
	what string // the evaluator's reason, and its detail in parentheses
}

func (p *podSecurity) evaluate(level podSecurityLevel, meta *metav1.ObjectMeta, spec *corev1.PodSpec, specPath *field.Path) []violation {
	if level.Level == api.LevelPrivileged {
		return nil
	}
	podOnly := spec.DeepCopy()
	podOnly.InitContainers, podOnly.Containers, podOnly.EphemeralContainers = nil, nil, nil
	var out []violation
	podFailures := map[string]bool{}
	for _, r := range p.evaluator.EvaluatePod(level.LevelVersion, meta, podOnly) {
		if !r.Allowed {
			podFailures[r.ForbiddenReason+"\x00"+r.ForbiddenDetail] = true
			out = append(out, violation{podFieldPath(spec, specPath, r.ForbiddenReason), describeCheck(r)})
		}
	}
	for _, list := range []struct {
		name       string
		containers []corev1.Container
		put        func(*corev1.PodSpec, corev1.Container)
	}{
		{"initContainers", spec.InitContainers, func(s *corev1.PodSpec, c corev1.Container) { s.InitContainers = []corev1.Container{c} }},
		{"containers", spec.Containers, func(s *corev1.PodSpec, c corev1.Container) { s.Containers = []corev1.Container{c} }},
	} {
		for i, c := range list.containers {
			alone := podOnly.DeepCopy()
			list.put(alone, c)
			for _, r := range p.evaluator.EvaluatePod(level.LevelVersion, meta, alone) {
				if !r.Allowed && !podFailures[r.ForbiddenReason+"\x00"+r.ForbiddenDetail] {
					out = append(out, violation{containerFieldPath(specPath.Child(list.name).Index(i), r.ForbiddenReason), describeCheck(r)})
				}
			}
		}
	}
	return out
}

func describeCheck(r policy.CheckResult) string {
	if r.ForbiddenDetail == "" {
		return r.ForbiddenReason
	}
	return r.ForbiddenReason + " (" + r.ForbiddenDetail + ")"
}

// warnings says, one line per level, what the template would break at the
// namespace's warn and audit levels.
func (p *podSecurity) warnings(pol namespacePolicy, meta *metav1.ObjectMeta, spec *corev1.PodSpec, specPath *field.Path) []string {
	var out []string
	for _, level := range pol.warnOrAudit {
		found := p.evaluate(level, meta, spec, specPath)
		if len(found) == 0 {
			continue
		}
		parts := make([]string, len(found))
		for i, v := range found {
			parts[i] = v.path.String() + ": " + v.what
		}
		out = append(out, fmt.Sprintf("would violate PodSecurity %q, %s: %s", level.String(), level.source, strings.Join(parts, "; ")))
	}
	return out
}

// The fields the evaluator's checks are about, by the reason each gives.
var (
	containerCheckFields = map[string]string{
		"privileged":                        "securityContext.privileged",
		"allowPrivilegeEscalation != false": "securityContext.allowPrivilegeEscalation",
		"unrestricted capabilities":         "securityContext.capabilities.drop",
		"non-default capabilities":          "securityContext.capabilities.add",
		"runAsNonRoot != true":              "securityContext.runAsNonRoot",
		"runAsUser=0":                       "securityContext.runAsUser",
		"seccompProfile":                    "securityContext.seccompProfile",
		"seLinuxOptions":                    "securityContext.seLinuxOptions",
		"procMount":                         "securityContext.procMount",
		"hostProcess":                       "securityContext.windowsOptions.hostProcess",
		"forbidden AppArmor profile":        "securityContext.appArmorProfile",
		"forbidden AppArmor profiles":       "securityContext.appArmorProfile",
		"hostPort":                          "ports",
	}
	podCheckFields = map[string]string{
		"hostPath volumes":            "volumes",
		"restricted volume types":     "volumes",
		"forbidden sysctls":           "securityContext.sysctls",
		"seccompProfile":              "securityContext.seccompProfile",
		"seLinuxOptions":              "securityContext.seLinuxOptions",
		"runAsNonRoot != true":        "securityContext.runAsNonRoot",
		"runAsUser=0":                 "securityContext.runAsUser",
		"hostProcess":                 "securityContext.windowsOptions.hostProcess",
		"forbidden AppArmor profile":  "securityContext.appArmorProfile",
		"forbidden AppArmor profiles": "securityContext.appArmorProfile",
	}
)

func containerFieldPath(container *field.Path, reason string) *field.Path {
	return childPath(container, containerCheckFields[reason])
}

func podFieldPath(spec *corev1.PodSpec, specPath *field.Path, reason string) *field.Path {
	if reason == "host namespaces" {
		switch {
		case spec.HostNetwork:
			return specPath.Child("hostNetwork")
		case spec.HostPID:
			return specPath.Child("hostPID")
		case spec.HostIPC:
			return specPath.Child("hostIPC")
		}
	}
	return childPath(specPath, podCheckFields[reason])
}

// childPath walks a dotted field name below path; an empty one is path.
func childPath(path *field.Path, dotted string) *field.Path {
	if dotted == "" {
		return path
	}
	for _, name := range strings.Split(dotted, ".") {
		path = path.Child(name)
	}
	return path
}
