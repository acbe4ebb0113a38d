package webhooks

import (
	"fmt"

	ctrl "sigs.k8s.io/controller-runtime"
)

// SetupWithManager registers all of the operator's webhooks: SandboxSet
// defaulting and validation, with maxReplicas as the ceiling on a pool, and
// the Pod webhook, which lets only managerUsername create warm Pods and
// change their state.
func SetupWithManager(mgr ctrl.Manager, maxReplicas int32, managerUsername string) error {
	if err := (&SandboxSetWebhook{MaxReplicas: maxReplicas}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the SandboxSet webhooks: %w", err)
	}
	if err := (&PodWebhook{Reader: mgr.GetClient(), ManagerUsername: managerUsername}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the Pod webhook: %w", err)
	}
	return nil
}
