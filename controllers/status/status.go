// Package status computes a ChatCluster's status — its counts, the last
// finished rollout, status.storage and the Available, Progressing and
// Degraded conditions — from what one reconcile observed. Everything here is
// a pure function: no clock (the time is an argument), no API.
package status

import (
	"fmt"

	chatv1alpha1 "github.com/ringchat/ringchat/api/v1alpha1"
	"github.com/ringchat/ringchat/controllers/chatdconfig"
	"github.com/ringchat/ringchat/controllers/scaling"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Observed is what one reconcile saw and did, from which the status is
// computed.
type Observed struct {
	// StatefulSet as last read or written; nil when it does not exist.
	StatefulSet *appsv1.StatefulSet
	// Plan is the replicas and expected cluster size the StatefulSet was
	// given.
	Plan scaling.Plan
	// MissingSecrets describes each referenced Secret, or key, that does
	// not exist.
	MissingSecrets []string
	// ReconcileErr is the first error creating or updating an object.
	ReconcileErr error
	// Claims are the pods' data claims (spec.storage), as read or grown.
	Claims []corev1.PersistentVolumeClaim
	// ResizeErr says which claims could not be grown to spec.storage.size.
	ResizeErr error
	// AwaitingSize, when not empty, says which pods a scaling step waits
	// for: they do not apply the cluster size the StatefulSet records yet.
	AwaitingSize string
}

// Compute is the status of cc given what the reconcile observed. It starts
// from cc.Status so that lastTransitionTime is kept for conditions whose
// status does not change, and so that currentImage and configHash keep
// describing the last finished rollout while another is under way.
func Compute(cc *chatv1alpha1.ChatCluster, obs Observed, now metav1.Time) chatv1alpha1.ChatClusterStatus {
	st := *cc.Status.DeepCopy()
	st.ObservedGeneration = cc.Generation
	st.Selector = cc.SelectorString()
	st.Replicas, st.ReadyReplicas = 0, 0
	if sts := obs.StatefulSet; sts != nil {
		st.Replicas = sts.Status.Replicas
		st.ReadyReplicas = sts.Status.ReadyReplicas
		if rolloutDone(sts) && sts.Status.ReadyReplicas == sts.Status.Replicas {
			if c := findContainer(sts.Spec.Template.Spec.Containers, chatdconfig.ContainerName); c != nil {
				st.CurrentImage = c.Image
			}
			st.ConfigHash = sts.Spec.Template.Annotations[chatv1alpha1.AnnotationConfigHash]
		}
	}
	// A reconcile that failed before reading the claims keeps what the
	// last one saw.
	if obs.ReconcileErr == nil || st.Storage == nil {
		st.Storage = Storage(cc, obs.Claims)
	}
	// The cluster counts as created once a rollout has finished with every
	// pod ready; until then, missing or unready pods are not a degradation.
	created := st.CurrentImage != ""
	for _, c := range []metav1.Condition{
		Available(cc, obs),
		Progressing(cc, obs, created),
		Degraded(cc, obs, created),
	} {
		setCondition(&st.Conditions, c, cc.Generation, now)
	}
	return st
}

// Paused is cc's status while the pause annotation is set: only
// Progressing changes (False, ReconciliationPaused), and observedGeneration
// stays at the last generation the operator acted on.
func Paused(cc *chatv1alpha1.ChatCluster, now metav1.Time) chatv1alpha1.ChatClusterStatus {
	st := *cc.Status.DeepCopy()
	setCondition(&st.Conditions, metav1.Condition{
		Type:    chatv1alpha1.ConditionProgressing,
		Status:  metav1.ConditionFalse,
		Reason:  chatv1alpha1.ReasonPaused,
		Message: fmt.Sprintf("reconciliation is paused by the annotation %s=true; remove it to resume", chatv1alpha1.AnnotationPauseReconcile),
	}, cc.Generation, now)
	return st
}

func setCondition(conds *[]metav1.Condition, c metav1.Condition, generation int64, now metav1.Time) {
	c.ObservedGeneration = generation
	c.LastTransitionTime = now // kept by SetStatusCondition when the status does not change
	meta.SetStatusCondition(conds, c)
}

// rolloutDone reports whether the StatefulSet controller has seen the
// current spec and every pod runs the current revision.
func rolloutDone(sts *appsv1.StatefulSet) bool {
	s := sts.Status
	return s.ObservedGeneration >= sts.Generation && s.ObservedGeneration > 0 &&
		s.Replicas == scaling.Replicas(sts) && s.UpdatedReplicas == s.Replicas &&
		s.CurrentRevision == s.UpdateRevision
}

func findContainer(cs []corev1.Container, name string) *corev1.Container {
	for i := range cs {
		if cs[i].Name == name {
			return &cs[i]
		}
	}
	return nil
}
