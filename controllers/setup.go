package controllers

import (
	"context"
	"fmt"

	ctrl "sigs.k8s.io/controller-runtime"
)

// SetupWithManager registers the operator's controllers: the SandboxSet
// controller, which keeps pools full, the expiry controller, which deletes
// claimed sandboxes at their shutdown time, and the NetworkPolicy
// controller, which keeps each pool's network isolation.
func SetupWithManager(ctx context.Context, mgr ctrl.Manager, o Options) error {
	pools := &SandboxSetReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Recorder: mgr.GetEventRecorder("sandboxset-controller"), Options: o}
	if err := pools.SetupWithManager(ctx, mgr); err != nil {
		return fmt.Errorf("setting up the SandboxSet controller: %w", err)
	}
	expiry := &ExpiryReconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("sandbox-expiry-controller")}
	if err := expiry.SetupWithManager(mgr, o.Workers); err != nil {
		return fmt.Errorf("setting up the expiry controller: %w", err)
	}
	network := &NetworkPolicyReconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("sandboxset-network-controller"), BlockedCIDRs: o.BlockedCIDRs}
	if err := network.SetupWithManager(ctx, mgr, o.Workers); err != nil {
		return fmt.Errorf("setting up the NetworkPolicy controller: %w", err)
	}
	return nil
}
