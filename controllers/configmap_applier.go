package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/yaml"

	chatv1alpha1 "github.com/ringchat/ringchat/api/v1alpha1"
)

// ManifestKey is the ConfigMap key that holds a ChatCluster manifest.
const ManifestKey = "chatcluster.yaml"

// Annotations the ConfigMapApplier puts on the ChatCluster it applies.
const (
	// AnnotationAppliedManifest is a hash of the ConfigMap's UID and the
	// manifest last applied. While it matches the ConfigMap, the applier
	// writes nothing.
	AnnotationAppliedManifest = "chat.ringchat.io/applied-manifest"
	// AnnotationAppliedReplicas is spec.replicas of the manifest last
	// applied (absent when the manifest had none). A new manifest with the
	// same replicas keeps the ChatCluster's own count.
	AnnotationAppliedReplicas = "chat.ringchat.io/applied-replicas"
)

// ConfigMapApplier keeps a ChatCluster in line with a manifest held in a
// ConfigMap. It exists for the Helm chart's cluster.enabled: Helm builds
// every object of a release before creating any, so one install cannot
// create the CRD and a ChatCluster; it can create a ConfigMap, which the
// operator turns into the ChatCluster. The ChatCluster is owned by the
// ConfigMap, so removing the ConfigMap (helm uninstall) removes the cluster.
//
// It is a controller: it watches the ConfigMap and the ChatClusters the
// ConfigMap owns, and applies when the ConfigMap changes (helm install, helm
// upgrade) or such a ChatCluster is deleted (by hand: it is created again).
// The manifest is applied when it changes, not on every event: between
// changes the ChatCluster is left as others made it, so `kubectl scale`, a
// HorizontalPodAutoscaler (both through the scale subresource) and hand
// edits stay. A changed manifest is applied whole, except spec.replicas when
// it is the same as in the manifest applied before: then the ChatCluster
// keeps its current count, so a helm upgrade that changes the image does not
// undo an autoscaler's work, while one that changes cluster.replicas sets
// it.
type ConfigMapApplier struct {
	// Client writes the ChatCluster (server-side apply); Reader reads the
	// ConfigMap and the ChatCluster from the API server, not from a cache,
	// so that the apply conditional on the ChatCluster's resourceVersion
	// starts from the current object.
	Client client.Client
	Reader client.Reader
	// Namespace and Name locate the ConfigMap.
	Namespace, Name string
}

// SetupWithManager registers the applier as a controller of mgr, named
// "chatcluster-from-configmap", under the manager's leader election.
func (a *ConfigMapApplier) SetupWithManager(mgr ctrl.Manager) error {
	key := types.NamespacedName{Namespace: a.Namespace, Name: a.Name}
	toConfigMap := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{{NamespacedName: key}}
	})
	isConfigMap := predicate.NewPredicateFuncs(func(o client.Object) bool {
		return o.GetNamespace() == a.Namespace && o.GetName() == a.Name
	})
	// Only the deletion of a ChatCluster the ConfigMap owns matters; its
	// other changes (the reconciler's status writes, a scale) are left
	// alone by design.
	ownedDeleted := predicate.Funcs{
		CreateFunc:  func(event.CreateEvent) bool { return false },
		UpdateFunc:  func(event.UpdateEvent) bool { return false },
		GenericFunc: func(event.GenericEvent) bool { return false },
		DeleteFunc: func(e event.DeleteEvent) bool {
			if e.Object.GetNamespace() != a.Namespace {
				return false
			}
			for _, ref := range e.Object.GetOwnerReferences() {
				if ref.Kind == "ConfigMap" && ref.APIVersion == "v1" && ref.Name == a.Name {
					return true
				}
			}
			return false
		},
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("chatcluster-from-configmap").
		Watches(&corev1.ConfigMap{}, toConfigMap, builder.WithPredicates(isConfigMap)).
		Watches(&chatv1alpha1.ChatCluster{}, toConfigMap, builder.WithPredicates(ownedDeleted)).
		Complete(a)
}

// Reconcile applies the ConfigMap's manifest (every request is for the one
// ConfigMap). A manifest that is not a ChatCluster is reported and not
// retried: the fixed ConfigMap comes back through the watch.
func (a *ConfigMapApplier) Reconcile(ctx context.Context, _ reconcile.Request) (reconcile.Result, error) {
	err := a.Apply(ctx)
	if errors.Is(err, errBadManifest) {
		return reconcile.Result{}, reconcile.TerminalError(err)
	}
	return reconcile.Result{}, err
}

// errBadManifest marks a ConfigMap whose manifest cannot be applied as it
// is.
var errBadManifest = errors.New("bad manifest")

// Apply reads the ConfigMap and, unless the ChatCluster already carries its
// manifest (AnnotationAppliedManifest), server-side applies the manifest's
// ChatCluster. A missing ConfigMap is not an error: there is nothing to
// apply.
func (a *ConfigMapApplier) Apply(ctx context.Context) error {
	cm := &corev1.ConfigMap{}
	if err := a.Reader.Get(ctx, client.ObjectKey{Namespace: a.Namespace, Name: a.Name}, cm); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("read ConfigMap %s/%s: %w", a.Namespace, a.Name, err)
	}
	raw, ok := cm.Data[ManifestKey]
	if !ok {
		return fmt.Errorf("%w: ConfigMap %s/%s has no %q key", errBadManifest, a.Namespace, a.Name, ManifestKey)
	}
	manifest := &chatv1alpha1.ChatCluster{}
	if err := yaml.UnmarshalStrict([]byte(raw), manifest); err != nil {
		return fmt.Errorf("%w: ConfigMap %s/%s: %s is not a ChatCluster: %w", errBadManifest, a.Namespace, a.Name, ManifestKey, err)
	}
	manifest.APIVersion, manifest.Kind = chatv1alpha1.GroupVersion.String(), "ChatCluster"
	manifest.Namespace = a.Namespace // owned by the ConfigMap, so in its namespace
	manifest.OwnerReferences = []metav1.OwnerReference{{
		APIVersion: "v1", Kind: "ConfigMap", Name: cm.Name, UID: cm.UID,
		BlockOwnerDeletion: ptr.To(false),
	}}
	manifest.Status = chatv1alpha1.ChatClusterStatus{}
	manifest.ManagedFields = nil
	manifest.ResourceVersion = ""
	// The owner is part of what is applied: a ConfigMap deleted and created
	// again with the same manifest is applied again, to own the ChatCluster.
	sum := sha256.Sum256([]byte(string(cm.UID) + "\n" + raw))
	hash := hex.EncodeToString(sum[:16])
	replicas := ""
	if manifest.Spec.Replicas != nil {
		replicas = strconv.Itoa(int(*manifest.Spec.Replicas))
	}
	if manifest.Annotations == nil {
		manifest.Annotations = map[string]string{}
	}
	manifest.Annotations[AnnotationAppliedManifest] = hash
	if replicas != "" {
		manifest.Annotations[AnnotationAppliedReplicas] = replicas
	}

	// A conflict means the ChatCluster changed between the read and the
	// apply (see below): read it again.
	return retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		cc := manifest.DeepCopy()
		live := &chatv1alpha1.ChatCluster{}
		switch err := a.Reader.Get(ctx, client.ObjectKeyFromObject(cc), live); {
		case apierrors.IsNotFound(err):
			live = nil
		case err != nil:
			return fmt.Errorf("read ChatCluster %s/%s: %w", cc.Namespace, cc.Name, err)
		case live.Annotations[AnnotationAppliedManifest] == hash:
			return nil // applied already
		}
		if live != nil && live.Spec.Replicas != nil && replicas != "" && live.Annotations[AnnotationAppliedReplicas] == replicas {
			// The manifest's replicas did not change since the last apply:
			// keep the count of the ChatCluster, which kubectl scale or an
			// autoscaler may have set. The resourceVersion makes the apply
			// fail with a conflict if the count changed since it was read.
			cc.Spec.Replicas = ptr.To(*live.Spec.Replicas)
			cc.ResourceVersion = live.ResourceVersion
		}
		//lint:ignore SA1019 server-side apply of a typed object; the apply-configuration API needs generated code we do not have.
		if err := a.Client.Patch(ctx, cc, client.Apply, client.FieldOwner("ringchat-chart"), client.ForceOwnership); err != nil {
			return fmt.Errorf("apply ChatCluster %s/%s: %w", cc.Namespace, cc.Name, err)
		}
		log.FromContext(ctx).Info("applied the ChatCluster from its ConfigMap", "chatcluster", cc.Namespace+"/"+cc.Name,
			"configmap", a.Namespace+"/"+a.Name, "created", live == nil, "replicas", cc.Spec.Replicas)
		return nil
	})
}
