package controllers

import (
	"maps"
	"slices"
	"strings"

	chatv1alpha1 "github.com/ringchat/ringchat/api/v1alpha1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// resourceBuilder builds one object the ChatCluster owns. Build returns the
// object's identity (kind, name, namespace) for controllerutil.CreateOrUpdate
// to read; Update sets what the operator decides on the object, new or as
// read from the API server, leaving alone what others set (a Service's
// clusterIP, labels added by other tools, fields the API server defaults).
// The reconciler adds the controller owner reference after Update.
type resourceBuilder interface {
	Build(cc *chatv1alpha1.ChatCluster) client.Object
	Update(cc *chatv1alpha1.ChatCluster, obj client.Object) error
}

// Labels on every object the operator creates. The selector labels
// (app.kubernetes.io/name, chat.ringchat.io/cluster) come from the API
// package; the others describe the object.
const (
	labelInstance  = "app.kubernetes.io/instance"
	labelPartOf    = "app.kubernetes.io/part-of"
	labelManagedBy = "app.kubernetes.io/managed-by"
	labelComponent = "app.kubernetes.io/component"

	managedByValue = "ringchat-operator"
	partOfValue    = "ringchat"
	componentValue = "chat-server"

	// annotationManagedAnnotations lists, on an object whose annotations
	// mix the operator's (from the spec) and other tools', the keys the
	// operator set, so that a key removed from the spec is removed from the
	// object and nothing else is.
	annotationManagedAnnotations = "chat.ringchat.io/managed-annotations"
)

// commonLabels are the labels of every object of cc.
func commonLabels(cc *chatv1alpha1.ChatCluster) map[string]string {
	l := cc.SelectorLabels()
	l[labelInstance] = cc.Name
	l[labelPartOf] = partOfValue
	l[labelManagedBy] = managedByValue
	l[labelComponent] = componentValue
	return l
}

// withLabels returns existing with every label of add set (add wins).
func withLabels(existing, add map[string]string) map[string]string {
	if existing == nil {
		existing = make(map[string]string, len(add))
	}
	maps.Copy(existing, add)
	return existing
}

// withManagedAnnotations sets want on existing, removes the keys the
// operator set before and no longer wants, and records the keys it manages.
func withManagedAnnotations(existing, want map[string]string) map[string]string {
	if existing == nil {
		existing = map[string]string{}
	}
	for _, k := range strings.Split(existing[annotationManagedAnnotations], ",") {
		if _, keep := want[k]; k != "" && !keep {
			delete(existing, k)
		}
	}
	delete(existing, annotationManagedAnnotations)
	maps.Copy(existing, want)
	if len(want) > 0 {
		existing[annotationManagedAnnotations] = strings.Join(slices.Sorted(maps.Keys(want)), ",")
	}
	if len(existing) == 0 {
		return nil
	}
	return existing
}
