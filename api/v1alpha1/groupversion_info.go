// Package v1alpha1 holds version v1alpha1 of the chat.ringchat.io API: the
// ChatCluster resource, which asks the ringchat operator to run a cluster of
// chatd nodes.
//
// The field documentation becomes the CRD's descriptions, which is what
// `kubectl explain chatcluster.spec` prints, so it is written for the people
// who write ChatCluster objects. Notes for the operator's authors are on the
// helper methods in chatcluster_helpers.go.
//
// +kubebuilder:object:generate=true
// +groupName=chat.ringchat.io
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of every type in this package.
	GroupVersion = schema.GroupVersion{Group: "chat.ringchat.io", Version: "v1alpha1"}

	// SchemeBuilder registers this package's types with a runtime.Scheme.
	//lint:ignore SA1019 kubebuilder's layout; its replacement (a runtime.SchemeBuilder with a hand-written addKnownTypes) would add code, not safety.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds this package's types to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
