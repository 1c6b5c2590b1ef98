package resources

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	chatv1alpha1 "github.com/ringchat/ringchat/api/v1alpha1"
	"github.com/ringchat/ringchat/controllers/chatdconfig"
	"github.com/ringchat/ringchat/controllers/scaling"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

const (
	// AnnotationTemplateHash, on the StatefulSet, is a digest of the pod
	// template the operator last wrote. See StatefulSetBuilder.Update.
	AnnotationTemplateHash = "chat.ringchat.io/pod-template-hash"

	// AnnotationRestartedAt is what `kubectl rollout restart` sets on a pod
	// template; the operator keeps it so that it does not roll the pods a
	// second time.
	AnnotationRestartedAt = "kubectl.kubernetes.io/restartedAt"
)

// StatefulSetBuilder builds the StatefulSet of chatd nodes.
type StatefulSetBuilder struct {
	// Config is the chatd configuration of the pods.
	Config chatdconfig.Config
	// Plan is the replicas and cluster size of this step (scaling.Next).
	Plan scaling.Plan
	// Now stamps a change of the expected cluster size.
	Now time.Time
}

// Build names the StatefulSet (the ChatCluster's name).
func (StatefulSetBuilder) Build(cc *chatv1alpha1.ChatCluster) client.Object {
	return &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: cc.Name, Namespace: cc.Namespace}}
}

// Update sets replicas (per the plan), the claim retention policy, the pod
// template and the annotations that record the plan's cluster size
// (scaling.AnnotationExpectedNodes, and when it changed). The fields a
// StatefulSet cannot change (selector, serviceName, podManagementPolicy,
// volumeClaimTemplates) are set when it is created.
//
// The pod template is replaced when it differs from the desired one in a
// field the operator sets (equality.Semantic.DeepDerivative: fields the
// desired template leaves empty, which the API server defaults, are not
// compared), or when the desired template changed since the last write (the
// digest in AnnotationTemplateHash; this catches what DeepDerivative cannot
// see, such as a toleration removed from the spec). Otherwise it is left as
// the API server returned it, so a reconcile that changes nothing writes
// nothing.
func (b StatefulSetBuilder) Update(cc *chatv1alpha1.ChatCluster, obj client.Object) error {
	sts := obj.(*appsv1.StatefulSet)
	sts.Labels = withLabels(sts.Labels, CommonLabels(cc))
	if sts.ResourceVersion == "" {
		sts.Spec.Selector = &metav1.LabelSelector{MatchLabels: cc.SelectorLabels()}
		sts.Spec.ServiceName = cc.HeadlessServiceName()
		// Parallel: pods start and stop together. A chatd node is ready only
		// once it has joined others and sees a majority, so OrderedReady would
		// wait for pod 0 to be ready before creating pod 1: forever.
		sts.Spec.PodManagementPolicy = appsv1.ParallelPodManagement
		sts.Spec.VolumeClaimTemplates = volumeClaimTemplates(cc)
	}
	sts.Spec.Replicas = ptr.To(b.Plan.Replicas)
	sts.Spec.PersistentVolumeClaimRetentionPolicy = claimRetentionPolicy(cc, b.Plan)
	// Rolling updates replace one pod at a time, highest ordinal first, each
	// after the previous one is ready (whatever podManagementPolicy says).
	// (maxUnavailable, which the API server may default, is left alone.)
	u := &sts.Spec.UpdateStrategy
	u.Type = appsv1.RollingUpdateStatefulSetStrategyType
	if u.RollingUpdate == nil {
		u.RollingUpdate = &appsv1.RollingUpdateStatefulSetStrategy{}
	}
	u.RollingUpdate.Partition = ptr.To[int32](0)

	desired := PodTemplate(cc, b.Config)
	if v, ok := sts.Spec.Template.Annotations[AnnotationRestartedAt]; ok {
		desired.Annotations[AnnotationRestartedAt] = v
	}
	digest, err := TemplateDigest(desired)
	if err != nil {
		return err
	}
	if sts.Annotations[AnnotationTemplateHash] != digest ||
		!equality.Semantic.DeepDerivative(desired, sts.Spec.Template) {
		sts.Spec.Template = desired
	}
	if sts.Annotations == nil {
		sts.Annotations = map[string]string{}
	}
	sts.Annotations[AnnotationTemplateHash] = digest
	expected := strconv.FormatInt(int64(b.Plan.ExpectedNodes), 10)
	if sts.Annotations[scaling.AnnotationExpectedNodes] != expected {
		sts.Annotations[scaling.AnnotationExpectedNodes] = expected
		sts.Annotations[scaling.AnnotationExpectedNodesChanged] = b.Now.UTC().Format(time.RFC3339Nano)
	}
	return nil
}

// volumeClaimTemplates is the pods' volume when spec.storage is set: one
// ReadWriteOnce claim per pod (data-<name>-<ordinal>), labelled like the
// cluster's other objects (the StatefulSet controller adds the selector
// labels too, so `kubectl get pvc -l chat.ringchat.io/cluster=<name>` lists
// them). Fixed once the StatefulSet exists: growing spec.storage.size is
// applied to the claims themselves (the reconciler's volume_claims.go).
func volumeClaimTemplates(cc *chatv1alpha1.ChatCluster) []corev1.PersistentVolumeClaim {
	s := cc.Spec.Storage
	if s == nil {
		return nil
	}
	var class *string
	if s.StorageClassName != "" {
		class = ptr.To(s.StorageClassName)
	}
	return []corev1.PersistentVolumeClaim{{
		ObjectMeta: metav1.ObjectMeta{Name: chatv1alpha1.DataVolumeName, Labels: CommonLabels(cc)},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: class,
			Resources: corev1.VolumeResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceStorage: s.Size},
			},
		},
	}}
}

// claimRetentionPolicy decides what happens to the pods' volumes.
//
//   - whenDeleted: Retain. Deleting the ChatCluster (and so its
//     StatefulSet) keeps every volume; a ChatCluster of the same name finds
//     them again. Delete them by hand (docs: controllers/README.md).
//   - whenScaled: Delete. A pod removed by a scale-down is given SIGTERM,
//     hands the rooms it owns to the nodes that stay (chatd's drain, bounded
//     by drainTimeout within terminationGracePeriodSeconds), and exits; only
//     then, the pod gone, does the garbage collector delete its claim (the
//     StatefulSet controller makes the pod the claim's owner). If the drain
//     times out, the rooms it did not hand off are still stored on their
//     other replicas (replicationFactor ≥ 2), which take them over.
//   - Except while the plan is 0 replicas: scaling to 0 stops every pod at
//     once, with nobody to hand rooms to, so the volumes are kept
//     (whenScaled: Retain) and the history comes back with the pods.
//
// Without storage there are no claims; the API server's default
// (Retain, Retain) is set so that a reconcile writes nothing.
func claimRetentionPolicy(cc *chatv1alpha1.ChatCluster, plan scaling.Plan) *appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy {
	p := &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{
		WhenDeleted: appsv1.RetainPersistentVolumeClaimRetentionPolicyType,
		WhenScaled:  appsv1.RetainPersistentVolumeClaimRetentionPolicyType,
	}
	if cc.Spec.Storage != nil && plan.Replicas > 0 {
		p.WhenScaled = appsv1.DeletePersistentVolumeClaimRetentionPolicyType
	}
	return p
}

// TemplateDigest is the digest of a pod template recorded in
// AnnotationTemplateHash.
func TemplateDigest(t corev1.PodTemplateSpec) (string, error) {
	b, err := json.Marshal(t)
	if err != nil {
		return "", fmt.Errorf("encoding the pod template: %w", err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])[:32], nil
}
