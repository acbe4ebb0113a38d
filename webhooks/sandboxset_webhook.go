package webhooks

import (
	"context"
	"fmt"
	"net/http"
	"slices"

	admissionv1 "k8s.io/api/admission/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
)

// DefaultMaxUnavailable is the update strategy a SandboxSet gets when it
// names none.
var DefaultMaxUnavailable = intstr.FromString("25%")

// SandboxSetWebhook defaults and validates SandboxSets.
type SandboxSetWebhook struct {
	// MaxReplicas is the ceiling on one pool's size. An unbounded pool lets
	// one object create Pods without limit.
	MaxReplicas int32
	// ManagerUsername is the manager's own identity: the autoscaler, the
	// only one that may change an autoscaled pool's replicas.
	ManagerUsername string
	// APIReader reads the SandboxSet a scale request is for.
	APIReader client.Reader

	podSecurity *podSecurity
}

// +kubebuilder:webhook:path=/mutate-agents-kruise-io-v1alpha1-sandboxset,mutating=true,failurePolicy=fail,sideEffects=None,groups=agents.kruise.io,resources=sandboxsets,verbs=create;update,versions=v1alpha1,name=msandboxset.agents.kruise.io,admissionReviewVersions=v1,timeoutSeconds=5
// +kubebuilder:webhook:path=/validate-agents-kruise-io-v1alpha1-sandboxset,mutating=false,failurePolicy=fail,sideEffects=None,groups=agents.kruise.io,resources=sandboxsets,verbs=create;update,versions=v1alpha1,name=vsandboxset.agents.kruise.io,admissionReviewVersions=v1,timeoutSeconds=5

var (
	_ admission.Defaulter[*agentsv1alpha1.SandboxSet] = &SandboxSetWebhook{}
	_ admission.Validator[*agentsv1alpha1.SandboxSet] = &SandboxSetWebhook{}
	_ admission.Handler                               = &scaleValidator{}
)

// Default fills in what users leave out, so that equivalent specs hash to
// the same revision. It is idempotent.
func (w *SandboxSetWebhook) Default(_ context.Context, sbs *agentsv1alpha1.SandboxSet) error {
	defaultSandboxSet(sbs)
	return nil
}

func defaultSandboxSet(sbs *agentsv1alpha1.SandboxSet) {
	tmpl := &sbs.Spec.Template
	// With generateName the name is not known yet; the controller labels
	// every Pod anyway.
	if sbs.Name != "" {
		if tmpl.Labels == nil {
			tmpl.Labels = map[string]string{}
		}
		tmpl.Labels[agentsv1alpha1.LabelSandboxSet] = sbs.Name
	}
	if sbs.Spec.UpdateStrategy.MaxUnavailable == nil {
		sbs.Spec.UpdateStrategy.MaxUnavailable = ptr.To(DefaultMaxUnavailable)
	}
	// Sandboxes run untrusted code: no API credentials unless asked for.
	if tmpl.Spec.AutomountServiceAccountToken == nil {
		tmpl.Spec.AutomountServiceAccountToken = ptr.To(false)
	}
	slices.Sort(sbs.Spec.PersistentContents)
	sbs.Spec.PersistentContents = slices.Compact(sbs.Spec.PersistentContents)
}

// ValidateCreate refuses a SandboxSet that could not fill its pool.
func (w *SandboxSetWebhook) ValidateCreate(ctx context.Context, sbs *agentsv1alpha1.SandboxSet) (admission.Warnings, error) {
	return w.validate(ctx, sbs, nil)
}

// ValidateUpdate applies the same rules to the new object.
func (w *SandboxSetWebhook) ValidateUpdate(ctx context.Context, old, sbs *agentsv1alpha1.SandboxSet) (admission.Warnings, error) {
	return w.validate(ctx, sbs, old)
}

// validate checks the SandboxSet, then its template against the Pod
// Security level its Pods will be held to. An update that leaves the
// template alone is not judged again, so a namespace that has since raised
// its level does not lock the pool's size or lifetime in place.
func (w *SandboxSetWebhook) validate(ctx context.Context, sbs, old *agentsv1alpha1.SandboxSet) (admission.Warnings, error) {
	errs := validateSandboxSet(sbs, old, w.MaxReplicas)
	errs = append(errs, w.validateAutoscaling(ctx, sbs, old)...)
	if len(errs) > 0 || (old != nil && equality.Semantic.DeepEqual(old.Spec.Template, sbs.Spec.Template)) {
		return nil, invalid(sandboxSetKind, sbs.Name, errs)
	}
	pol, err := w.podSecurity.policyFor(ctx, sbs.Namespace)
	if err != nil {
		return nil, err
	}
	tmpl := &sbs.Spec.Template
	path := field.NewPath("spec", "template", "spec")
	if errs := w.podSecurity.violations(pol.enforce, &tmpl.ObjectMeta, &tmpl.Spec, path); len(errs) > 0 {
		return nil, invalid(sandboxSetKind, sbs.Name, errs)
	}
	return w.podSecurity.warnings(pol, &tmpl.ObjectMeta, &tmpl.Spec, path), nil
}

// ValidateDelete allows every deletion: claimed sandboxes have already been
// released from the pool and survive it.
func (w *SandboxSetWebhook) ValidateDelete(context.Context, *agentsv1alpha1.SandboxSet) (admission.Warnings, error) {
	return nil, nil
}

// validateAutoscaling checks spec.autoscaling, against the operator's
// ceiling too, and refuses a change of replicas on a pool that stays
// autoscaled by anyone but the autoscaler.
func (w *SandboxSetWebhook) validateAutoscaling(ctx context.Context, sbs, old *agentsv1alpha1.SandboxSet) field.ErrorList {
	spec := sbs.Spec.Autoscaling
	if spec == nil {
		return nil
	}
	byHand := old != nil && old.Spec.Autoscaling != nil &&
		old.Spec.DesiredReplicas() != sbs.Spec.DesiredReplicas() && !w.byManager(ctx)
	errs := validateAutoscaling(spec, byHand, field.NewPath("spec"))
	grown := old == nil || old.Spec.Autoscaling == nil || spec.MaxReplicas > old.Spec.Autoscaling.MaxReplicas
	if spec.MaxReplicas > w.MaxReplicas && grown {
		errs = append(errs, field.Invalid(field.NewPath("spec", "autoscaling", "maxReplicas"), spec.MaxReplicas,
			fmt.Sprintf("must be at most %d, the operator's ceiling on one pool (manager flag --max-replicas)", w.MaxReplicas)))
	}
	return errs
}

func (w *SandboxSetWebhook) byManager(ctx context.Context) bool {
	req, err := admission.RequestFromContext(ctx)
	return err == nil && w.ManagerUsername != "" && req.UserInfo.Username == w.ManagerUsername
}

var sandboxSetKind = agentsv1alpha1.GroupVersion.WithKind("SandboxSet").GroupKind()

// +kubebuilder:webhook:path=/validate-agents-kruise-io-v1alpha1-sandboxset-scale,mutating=false,failurePolicy=fail,sideEffects=None,groups=agents.kruise.io,resources=sandboxsets/scale,verbs=update,versions=v1alpha1,name=vsandboxset-scale.agents.kruise.io,admissionReviewVersions=v1,timeoutSeconds=5

// scaleValidator holds kubectl scale and autoscalers to the same ceiling,
// and keeps them off a pool the operator autoscales. A scale request
// carries an autoscaling/v1 Scale, not a SandboxSet, which the typed
// validator cannot take; hence a plain handler.
type scaleValidator struct {
	maxReplicas     int32
	managerUsername string
	reader          client.Reader
	decoder         admission.Decoder
}

func (v *scaleValidator) Handle(ctx context.Context, req admission.Request) admission.Response {
	scale, oldScale := &autoscalingv1.Scale{}, &autoscalingv1.Scale{}
	if err := v.decoder.DecodeRaw(req.Object, scale); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	if err := v.decoder.DecodeRaw(req.OldObject, oldScale); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	errs := validateReplicas(scale.Spec.Replicas, &oldScale.Spec.Replicas, v.maxReplicas, field.NewPath("spec", "replicas"))
	if scale.Spec.Replicas != oldScale.Spec.Replicas && req.UserInfo.Username != v.managerUsername {
		sbs := &agentsv1alpha1.SandboxSet{}
		if err := v.reader.Get(ctx, client.ObjectKey{Namespace: req.Namespace, Name: req.Name}, sbs); err != nil {
			return admission.Errored(http.StatusInternalServerError, fmt.Errorf("reading SandboxSet %s to scale it: %w", req.Name, err))
		}
		errs = append(errs, validateAutoscaling(sbs.Spec.Autoscaling, true, field.NewPath("spec"))...)
	}
	if err := invalid(sandboxSetKind, req.Name, errs); err != nil {
		status := err.(apierrors.APIStatus).Status()
		return admission.Response{AdmissionResponse: admissionv1.AdmissionResponse{Allowed: false, Result: &status}}
	}
	return admission.Allowed("")
}

// tolerantDefaulter defaults SandboxSets it can decode and lets the others
// through unchanged. Mutating admission runs before the API server checks
// the schema, so a value of the wrong type (replicas: "three", or image: y,
// which YAML reads as true) reaches it first; refusing it here would say
// "json: cannot unmarshal…", where the schema names the field and what it
// wants. The typed form cannot let a request pass undecoded; hence a plain
// handler.
type tolerantDefaulter struct {
	defaulter admission.Handler
	decoder   admission.Decoder
}

func (d *tolerantDefaulter) Handle(ctx context.Context, req admission.Request) admission.Response {
	if err := d.decoder.DecodeRaw(req.Object, &agentsv1alpha1.SandboxSet{}); err != nil {
		return admission.Allowed("not a decodable SandboxSet: the schema refuses it, naming the field")
	}
	return d.defaulter.Handle(ctx, req)
}

// SetupWithManager registers the SandboxSet webhooks.
func (w *SandboxSetWebhook) SetupWithManager(mgr ctrl.Manager) error {
	decoder := admission.NewDecoder(mgr.GetScheme())
	server := mgr.GetWebhookServer()
	server.Register("/validate-agents-kruise-io-v1alpha1-sandboxset-scale", &webhook.Admission{
		Handler: &scaleValidator{maxReplicas: w.MaxReplicas, managerUsername: w.ManagerUsername, reader: w.APIReader, decoder: decoder},
	})
	server.Register("/mutate-agents-kruise-io-v1alpha1-sandboxset", &webhook.Admission{
		Handler: &tolerantDefaulter{defaulter: admission.WithDefaulter(mgr.GetScheme(), w), decoder: decoder},
	})
	return ctrl.NewWebhookManagedBy(mgr, &agentsv1alpha1.SandboxSet{}).
		WithValidator(w).
		Complete()
}
