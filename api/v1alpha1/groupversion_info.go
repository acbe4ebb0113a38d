// Package v1alpha1 holds the agents.kruise.io/v1alpha1 API: the SandboxSet
// warm pool and the labels and annotations that make up the Pod-level contract
// agents rely on.
// +kubebuilder:object:generate=true
// +groupName=agents.kruise.io
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of this API.
	GroupVersion = schema.GroupVersion{Group: "agents.kruise.io", Version: "v1alpha1"}

	// SchemeBuilder registers the types of this API with a scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the types of this API to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
