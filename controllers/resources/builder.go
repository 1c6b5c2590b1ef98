// Package resources holds the builders of the objects a ChatCluster owns,
// one file and one builder per object: the pods' ServiceAccount, the
// Secrets (gossip keyring, admin token, inter-node CA and the pods'
// certificates), the ConfigMap of chatd's configuration, the headless,
// client and metrics Services, the NetworkPolicy, the PodDisruptionBudget
// and the StatefulSet of chatd pods. Each builder is pure: it names its object
// (Build) and sets on it, new or as read from the API server, what the
// operator decides (Update). The reconciler creates or updates the objects
// with them.
package resources

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	chatv1alpha1 "github.com/ringchat/ringchat/api/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Builder builds one object the ChatCluster owns. Build returns the object's
// identity (kind, name, namespace) for controllerutil.CreateOrUpdate to
// read; Update sets what the operator decides on the object, new or as read
// from the API server, leaving alone what others set (a Service's clusterIP,
// labels added by other tools, fields the API server defaults). The
// reconciler adds the controller owner reference after Update.
type Builder interface {
	Build(cc *chatv1alpha1.ChatCluster) client.Object
	Update(cc *chatv1alpha1.ChatCluster, obj client.Object) error
}

// Labels on every object the operator creates. The selector labels
// (app.kubernetes.io/name, chat.ringchat.io/cluster) come from the API
// package; the others describe the object.
const (
	LabelInstance  = "app.kubernetes.io/instance"
	LabelPartOf    = "app.kubernetes.io/part-of"
	LabelManagedBy = "app.kubernetes.io/managed-by"
	LabelComponent = "app.kubernetes.io/component"

	// ManagedByValue is LabelManagedBy's value: the operator.
	ManagedByValue = "ringchat-operator"
	partOfValue    = "ringchat"
	componentValue = "chat-server"

	// AnnotationManagedAnnotations lists, on an object whose annotations
	// mix the operator's (from the spec) and other tools', the keys the
	// operator set, so that a key removed from the spec is removed from the
	// object and nothing else is.
	AnnotationManagedAnnotations = "chat.ringchat.io/managed-annotations"
)

// CommonLabels are the labels of every object of cc.
func CommonLabels(cc *chatv1alpha1.ChatCluster) map[string]string {
	l := cc.SelectorLabels()
	l[LabelInstance] = cc.Name
	l[LabelPartOf] = partOfValue
	l[LabelManagedBy] = ManagedByValue
	l[LabelComponent] = componentValue
	return l
}

// ConfigMapName is the name of cc's ConfigMap (ConfigMapBuilder).
func ConfigMapName(cc *chatv1alpha1.ChatCluster) string { return cc.Name + "-config" }

// ServiceAccountName is the name of cc's pods' ServiceAccount
// (ServiceAccountBuilder).
func ServiceAccountName(cc *chatv1alpha1.ChatCluster) string { return cc.Name }

// KindOf names the kind of an object the builders build, for events and
// messages (a typed object read from a cache has no TypeMeta).
func KindOf(obj client.Object) string {
	switch obj.(type) {
	case *appsv1.StatefulSet:
		return "StatefulSet"
	case *corev1.Service:
		return "Service"
	case *corev1.ConfigMap:
		return "ConfigMap"
	case *corev1.Secret:
		return "Secret"
	case *corev1.ServiceAccount:
		return "ServiceAccount"
	case *policyv1.PodDisruptionBudget:
		return "PodDisruptionBudget"
	case *networkingv1.NetworkPolicy:
		return "NetworkPolicy"
	}
	return fmt.Sprintf("%T", obj)
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
	for _, k := range strings.Split(existing[AnnotationManagedAnnotations], ",") {
		if _, keep := want[k]; k != "" && !keep {
			delete(existing, k)
		}
	}
	delete(existing, AnnotationManagedAnnotations)
	maps.Copy(existing, want)
	if len(want) > 0 {
		existing[AnnotationManagedAnnotations] = strings.Join(slices.Sorted(maps.Keys(want)), ",")
	}
	if len(existing) == 0 {
		return nil
	}
	return existing
}
