package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// PersistentContent is something the sandbox runtime keeps across
// hibernation and wake-up: ip (the Pod's IP address), memory (the
// processes' memory) or filesystem (the container's writable layer).
// +kubebuilder:validation:Enum=ip;memory;filesystem
type PersistentContent string

const (
	PersistentContentIP         PersistentContent = "ip"
	PersistentContentMemory     PersistentContent = "memory"
	PersistentContentFilesystem PersistentContent = "filesystem"
)

// SandboxSetSpec is the desired warm pool.
type SandboxSetSpec struct {
	// Replicas is the size of the warm pool: creating plus available
	// sandboxes. Claimed sandboxes leave the pool and do not count. At most
	// the operator's ceiling (manager flag --max-replicas, 5000 by default).
	// Defaults to 1. Negative values are refused by the API server's scale
	// subresource check; a schema minimum would only say so a second time.
	// While autoscaling is set, the autoscaler writes it and nobody else
	// may: leave it out of manifests that GitOps tools apply.
	// +kubebuilder:default=1
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`

	// Autoscaling sizes the pool from demand, to serve a share of claims
	// warm. While it is set the operator owns replicas: changing replicas
	// by hand, with kubectl scale or with an HorizontalPodAutoscaler, is
	// refused.
	// +optional
	Autoscaling *AutoscalingSpec `json:"autoscaling,omitempty"`

	// PersistentContents lists what the sandbox runtime keeps when it
	// hibernates a sandbox and wakes it up, each value at most once. Every
	// Pod of the pool carries them as the annotation
	// agents.kruise.io/persistent-contents (e.g. "ip,memory"), which is the
	// contract with the runtime: the runtime reads it, the operator only
	// stamps it.
	// +listType=set
	// +kubebuilder:validation:MaxItems=3
	// +optional
	PersistentContents []PersistentContent `json:"persistentContents,omitempty"`

	// Template is the Pod every sandbox of the pool is created from: a full
	// PodTemplateSpec (kubectl explain pod documents its fields). Its
	// restartPolicy must be Always, and its labels and annotations may not
	// use the agents.kruise.io/ prefix, which the operator owns.
	// +required
	Template corev1.PodTemplateSpec `json:"template"`

	// ClaimLifetime bounds how long a claimed sandbox lives: the operator
	// deletes it at its shutdown time (the agents.kruise.io/shutdown-time
	// annotation). Without it, a claimed sandbox lives until its holder
	// deletes it, unless the holder sets a shutdown time itself.
	// +optional
	ClaimLifetime *ClaimLifetime `json:"claimLifetime,omitempty"`

	// UpdateStrategy says how warm sandboxes move to a new template;
	// claimed sandboxes never do.
	// +kubebuilder:default={}
	// +optional
	UpdateStrategy SandboxSetUpdateStrategy `json:"updateStrategy,omitzero"`

	// Network says what the pool's sandboxes may reach and what may reach
	// them. By default the operator keeps a NetworkPolicy for the pool that
	// admits no ingress and lets sandboxes reach only cluster DNS and the
	// internet: no other Pod, not the API server, not link-local or
	// metadata addresses, no private range.
	// +kubebuilder:default={}
	// +optional
	Network SandboxNetwork `json:"network,omitzero"`

	// MaxHeldPerIdentity is how many of this pool's sandboxes one identity
	// (the user the API server authenticates, e.g. a ServiceAccount) may hold
	// at once, cold claims included. A claim past it is refused; releasing a
	// sandbox makes room. Unset means no limit.
	// +kubebuilder:validation:Minimum=1
	// +optional
	MaxHeldPerIdentity *int32 `json:"maxHeldPerIdentity,omitempty"`
}

// NetworkPolicyMode says whether the operator keeps a pool's NetworkPolicy.
// +kubebuilder:validation:Enum=Managed;None
type NetworkPolicyMode string

const (
	// NetworkPolicyManaged: the operator keeps a NetworkPolicy for the pool.
	NetworkPolicyManaged NetworkPolicyMode = "Managed"
	// NetworkPolicyNone: the operator keeps none, and deletes the one it made.
	NetworkPolicyNone NetworkPolicyMode = "None"
)

// SandboxNetwork is a pool's network isolation. The operator writes it as
// one standard NetworkPolicy, named <sandboxset>-sandboxes, that selects
// every Pod of the pool, warm or claimed, by its agents.kruise.io/sandboxset
// label. NetworkPolicies add up: another policy that selects these Pods can
// only let more traffic through.
type SandboxNetwork struct {
	// Policy is Managed (the default), for the operator's NetworkPolicy, or
	// None, for none: then nothing the operator makes limits the pool's
	// network, and the policy it made before is deleted.
	// +kubebuilder:default=Managed
	// +optional
	Policy NetworkPolicyMode `json:"policy,omitempty"`

	// Ingress lists who may reach the sandboxes, as NetworkPolicy ingress
	// rules (e.g. from a gateway's Pods, on one port). Empty means nobody:
	// not other sandboxes, not other Pods.
	// +optional
	Ingress []networkingv1.NetworkPolicyIngressRule `json:"ingress,omitempty"`

	// Egress lists more that the sandboxes may reach, as NetworkPolicy
	// egress rules (e.g. a CIDR on one port), beside cluster DNS and, unless
	// Internet is false, the internet.
	// +optional
	Egress []networkingv1.NetworkPolicyEgressRule `json:"egress,omitempty"`

	// EgressToServices lists Services whose Pods the sandboxes may reach, on
	// the Services' target ports. The operator follows each Service's
	// selector and ports; a Service that does not exist, or has no selector,
	// admits nothing until it does.
	// +listType=map
	// +listMapKey=namespace
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=32
	// +optional
	EgressToServices []ServiceReference `json:"egressToServices,omitempty"`

	// Internet lets the sandboxes reach public addresses: every address but
	// the private, link-local, loopback and reserved ranges and the API
	// server's own. Defaults to true.
	// +kubebuilder:default=true
	// +optional
	Internet *bool `json:"internet,omitempty"`
}

// ServiceReference names a Service.
type ServiceReference struct {
	// Namespace is the Service's namespace.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +required
	Namespace string `json:"namespace"`
	// Name is the Service's name.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +required
	Name string `json:"name"`
}

// NetworkPolicyEnabled says whether the operator keeps the pool's
// NetworkPolicy: unless the pool turns it off, it does.
func (n *SandboxNetwork) NetworkPolicyEnabled() bool {
	return n.Policy != NetworkPolicyNone
}

// InternetAllowed is Internet, or true, its default, when unset.
func (n *SandboxNetwork) InternetAllowed() bool {
	return n.Internet == nil || *n.Internet
}

// DesiredReplicas is spec.replicas, or 1, its default, when unset: the API
// server stores the default, so only an object built in Go lacks it.
func (s *SandboxSetSpec) DesiredReplicas() int32 {
	if s.Replicas == nil {
		return 1
	}
	return *s.Replicas
}

// ClaimLifetime is a pool's policy for the shutdown time of the sandboxes
// claimed from it, applied at each claim.
type ClaimLifetime struct {
	// Default is the lifetime, counted from the claim, of a sandbox whose
	// claim sets no shutdown time, e.g. 10m. Empty means Max, or no
	// shutdown time if Max is empty too.
	// +optional
	Default *metav1.Duration `json:"default,omitempty"`

	// Max is the longest a sandbox may live, counted from its claim, e.g.
	// 2h: no shutdown time, in the claim or in a renewal, may be later, and
	// none may be removed. Empty means no limit.
	// +optional
	Max *metav1.Duration `json:"max,omitempty"`
}

// SandboxSetUpdateStrategy limits how a template change rolls through the pool.
type SandboxSetUpdateStrategy struct {
	// MaxUnavailable is how many warm sandboxes, as a number or a percentage
	// of replicas (rounded up), may be unavailable while old ones are
	// replaced: a whole number of Pods, or a percentage from 0% to 100%
	// (the admission webhook checks it). At least one is always allowed.
	// Claimed sandboxes are never replaced. Defaults to 25%.
	// +kubebuilder:validation:XIntOrString
	// +kubebuilder:default="25%"
	// +optional
	MaxUnavailable *intstr.IntOrString `json:"maxUnavailable,omitempty"`
}

// SandboxSetStatus is the observed state of the warm pool.
type SandboxSetStatus struct {
	// ObservedGeneration is the generation this status was computed for: the
	// last one the controller reconciled without error, or found stalled.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Replicas counts the sandboxes in the pool: creating plus available,
	// neither claimed nor terminating.
	// +optional
	Replicas int32 `json:"replicas"`

	// AvailableReplicas counts the sandboxes that can be claimed now.
	// +optional
	AvailableReplicas int32 `json:"availableReplicas"`

	// UpdatedReplicas counts the pool's sandboxes at UpdateRevision.
	// +optional
	UpdatedReplicas int32 `json:"updatedReplicas"`

	// UpdateRevision is the hash of the current template and
	// persistentContents; new sandboxes carry it in their revision label.
	// +optional
	UpdateRevision string `json:"updateRevision,omitempty"`

	// Selector selects the pool's Pods, for the scale subresource and HPA.
	// +optional
	Selector string `json:"selector,omitempty"`

	// Autoscaling is what the autoscaler last decided and the demand it
	// saw; present while spec.autoscaling is.
	// +optional
	Autoscaling *AutoscalingStatus `json:"autoscaling,omitempty"`

	// Conditions say whether the pool is full and why not: Ready and
	// ReplicaFailure, and Reconciling and Stalled, which follow the kstatus
	// convention that GitOps tools read and are present only while True.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// Condition types of a SandboxSet.
const (
	// ConditionReady is True when every sandbox of the pool is available and
	// at the current revision.
	ConditionReady = "Ready"
	// ConditionReplicaFailure is True when the pool cannot create Pods.
	ConditionReplicaFailure = "ReplicaFailure"
	// ConditionReconciling is present, True, while the pool is filling or
	// rolling out a template change and nothing blocks it (kstatus
	// InProgress). Its reason is Ready's.
	ConditionReconciling = "Reconciling"
	// ConditionStalled is present, True, while something only a person can
	// fix keeps the pool from filling: a ResourceQuota, Pod Security, another
	// admission refusal, or a template no node fits (kstatus Failed). Its
	// reason is ReplicaFailure's or Ready's, whichever blocks.
	ConditionStalled = "Stalled"
)

// Condition reasons of a SandboxSet.
const (
	ReasonPoolReady         = "PoolReady"
	ReasonSandboxesCreating = "SandboxesCreating"
	ReasonRollingUpdate     = "RollingUpdate"
	ReasonUnschedulable     = "Unschedulable"
	ReasonQuotaExceeded     = "QuotaExceeded"
	ReasonCreateForbidden   = "CreateForbidden"
	ReasonCreateFailed      = "CreateFailed"
	ReasonCreateSucceeded   = "CreateSucceeded"
	// ReasonPodSecurityViolation: Pod Security admission refused the Pods,
	// at the namespace's enforce level or the operator's minimum.
	ReasonPodSecurityViolation = "PodSecurityViolation"
)

// SandboxSet keeps a warm pool of ready sandbox Pods. Agents claim a Pod by
// labelling it; the pool refills at once.
// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName=sbs,categories=all
// +kubebuilder:subresource:status
// +kubebuilder:subresource:scale:specpath=.spec.replicas,statuspath=.status.replicas,selectorpath=.status.selector
// +kubebuilder:printcolumn:name="Replicas",type=integer,JSONPath=".status.replicas"
// +kubebuilder:printcolumn:name="Available",type=integer,JSONPath=".status.availableReplicas"
// +kubebuilder:printcolumn:name="UpdateRevision",type=string,JSONPath=".status.updateRevision"
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=".metadata.creationTimestamp"
// +kubebuilder:printcolumn:name="Desired",type=integer,JSONPath=".spec.replicas",priority=1
// +kubebuilder:printcolumn:name="Updated",type=integer,JSONPath=".status.updatedReplicas",priority=1
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`,priority=1
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Target",type=string,JSONPath=".spec.autoscaling.targetWarmRatio",priority=1
// +kubebuilder:printcolumn:name="WarmHit",type=string,JSONPath=".status.autoscaling.warmHitRatio",priority=1
// +kubebuilder:printcolumn:name="Rate",type=string,JSONPath=".status.autoscaling.arrivalRate",priority=1
// +kubebuilder:printcolumn:name="Refill",type=string,JSONPath=".status.autoscaling.refillSeconds",priority=1
// +kubebuilder:printcolumn:name="SizedBy",type=string,JSONPath=".status.autoscaling.reason",priority=1
type SandboxSet struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec SandboxSetSpec `json:"spec"`
	// +optional
	Status SandboxSetStatus `json:"status,omitempty"`
}

// SandboxSetList is a list of SandboxSets.
// +kubebuilder:object:root=true
type SandboxSetList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []SandboxSet `json:"items"`
}

func init() {
	SchemeBuilder.Register(&SandboxSet{}, &SandboxSetList{})
}
