package controllers

import (
	"context"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	chatv1alpha1 "github.com/ringchat/ringchat/api/v1alpha1"
)

// ManifestKey is the ConfigMap key that holds a ChatCluster manifest.
const ManifestKey = "chatcluster.yaml"

// ConfigMapApplier keeps a ChatCluster in line with a manifest held in a
// ConfigMap. It exists for the Helm chart's cluster.enabled: Helm builds
// every object of a release before creating any, so one install cannot
// create the CRD and a ChatCluster; it can create a ConfigMap, which the
// operator turns into the ChatCluster. The ChatCluster is owned by the
// ConfigMap, so removing the ConfigMap (helm uninstall) removes the cluster.
type ConfigMapApplier struct {
	// Client writes the ChatCluster; Reader reads the ConfigMap directly
	// (not through the manager's cache, which is not started for it).
	Client client.Client
	Reader client.Reader
	// Namespace and Name locate the ConfigMap.
	Namespace, Name string
	// Interval is how often the manifest is re-applied (edits by helm
	// upgrade, drift by hand).
	Interval time.Duration
	Log      logr.Logger
}

// Start applies the manifest now and every Interval until ctx is done. It
// implements manager.Runnable.
func (a *ConfigMapApplier) Start(ctx context.Context) error {
	t := time.NewTicker(a.Interval)
	defer t.Stop()
	for {
		if err := a.Apply(ctx); err != nil {
			a.Log.Error(err, "applying the ChatCluster from its ConfigMap", "configmap", a.Namespace+"/"+a.Name)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// NeedLeaderElection makes only the leader apply.
func (a *ConfigMapApplier) NeedLeaderElection() bool { return true }

// Apply reads the ConfigMap and server-side applies its ChatCluster. A
// missing ConfigMap is not an error: there is nothing to apply.
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
		return fmt.Errorf("ConfigMap %s/%s has no %q key", a.Namespace, a.Name, ManifestKey)
	}
	cc := &chatv1alpha1.ChatCluster{}
	if err := yaml.UnmarshalStrict([]byte(raw), cc); err != nil {
		return fmt.Errorf("ConfigMap %s/%s: %s is not a ChatCluster: %w", a.Namespace, a.Name, ManifestKey, err)
	}
	cc.APIVersion, cc.Kind = chatv1alpha1.GroupVersion.String(), "ChatCluster"
	cc.Namespace = a.Namespace // owned by the ConfigMap, so in its namespace
	cc.OwnerReferences = []metav1.OwnerReference{{
		APIVersion: "v1", Kind: "ConfigMap", Name: cm.Name, UID: cm.UID,
		BlockOwnerDeletion: ptr.To(false),
	}}
	cc.Status = chatv1alpha1.ChatClusterStatus{}
	cc.ManagedFields = nil
	//nolint:staticcheck // server-side apply of a typed object; the apply-configuration API needs generated code we do not have.
	if err := a.Client.Patch(ctx, cc, client.Apply, client.FieldOwner("ringchat-chart"), client.ForceOwnership); err != nil {
		return fmt.Errorf("apply ChatCluster %s/%s: %w", cc.Namespace, cc.Name, err)
	}
	return nil
}
