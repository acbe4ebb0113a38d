package webhooks

import (
	"fmt"

	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
)

// Options configure the operator's webhooks.
type Options struct {
	// MaxReplicas is the ceiling on one pool's size.
	MaxReplicas int32
	// ManagerUsername is the manager's own identity, the only one allowed
	// to create warm Pods and change their state.
	ManagerUsername string
	// AdmissionParams is the ConfigMap the pool-pods admission policy reads
	// (config/policies/params.yaml); the eviction webhook reads its
	// adminGroups too.
	AdmissionParams types.NamespacedName
	// PodSecurityLevel is the least Pod Security level every template and
	// sandbox is held to, whatever its namespace enforces: privileged,
	// baseline or restricted; empty means DefaultPodSecurityLevel.
	PodSecurityLevel string
}

// SetupWithManager registers all of the operator's webhooks: SandboxSet
// defaulting and validation, the Pod webhook that stamps new Pods and
// judges claims, the eviction webhook, and the webhook that keeps exec,
// attach, port-forward and proxy to a sandbox its holder's.
func SetupWithManager(mgr ctrl.Manager, o Options) error {
	security, err := newPodSecurity(o.PodSecurityLevel, mgr.GetAPIReader())
	if err != nil {
		return err
	}
	if err := (&SandboxSetWebhook{MaxReplicas: o.MaxReplicas, ManagerUsername: o.ManagerUsername, APIReader: mgr.GetAPIReader(), podSecurity: security}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the SandboxSet webhooks: %w", err)
	}
	pods := &PodWebhook{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), ManagerUsername: o.ManagerUsername, podSecurity: security}
	if err := pods.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the Pod webhook: %w", err)
	}
	eviction := &EvictionWebhook{APIReader: mgr.GetAPIReader(), ManagerUsername: o.ManagerUsername, Params: o.AdmissionParams}
	if err := eviction.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the eviction webhook: %w", err)
	}
	connect := &ConnectWebhook{APIReader: mgr.GetAPIReader(), Params: o.AdmissionParams}
	if err := connect.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the exec, attach, port-forward and proxy webhook: %w", err)
	}
	return nil
}
