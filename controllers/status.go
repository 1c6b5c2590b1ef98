package controllers

import (
	"fmt"
	"strings"

	chatv1alpha1 "github.com/ringchat/ringchat/api/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ReasonPaused is the reason of Progressing=False while the ChatCluster
// carries the pause annotation. (Not in the API package's list of reasons
// yet.)
const ReasonPaused = "ReconciliationPaused"

// observed is what one reconcile saw and did, from which the status is
// computed. Everything in this file is a pure function of it.
type observed struct {
	// StatefulSet as last read or written; nil when it does not exist.
	StatefulSet *appsv1.StatefulSet
	// Plan is the replicas and expected cluster size the StatefulSet was given.
	Plan replicaPlan
	// MissingSecrets describes each referenced Secret, or key, that does
	// not exist.
	MissingSecrets []string
	// ReconcileErr is the first error creating or updating an object.
	ReconcileErr error
	// Claims are the pods' data claims (spec.storage), as read or grown.
	Claims []corev1.PersistentVolumeClaim
	// ResizeErr says which claims could not be grown to spec.storage.size.
	ResizeErr error
}

// computeStatus is the status of cc given what the reconcile observed. It
// starts from cc.Status so that lastTransitionTime is kept for conditions
// whose status does not change, and so that currentImage and configHash keep
// describing the last finished rollout while another is under way.
func computeStatus(cc *chatv1alpha1.ChatCluster, obs observed, now metav1.Time) chatv1alpha1.ChatClusterStatus {
	st := *cc.Status.DeepCopy()
	st.ObservedGeneration = cc.Generation
	st.Selector = cc.SelectorString()
	st.Replicas, st.ReadyReplicas = 0, 0
	if sts := obs.StatefulSet; sts != nil {
		st.Replicas = sts.Status.Replicas
		st.ReadyReplicas = sts.Status.ReadyReplicas
		if rolloutDone(sts) && sts.Status.ReadyReplicas == sts.Status.Replicas {
			if c := findContainer(sts.Spec.Template.Spec.Containers, containerName); c != nil {
				st.CurrentImage = c.Image
			}
			st.ConfigHash = sts.Spec.Template.Annotations[chatv1alpha1.AnnotationConfigHash]
		}
	}
	// A reconcile that failed before reading the claims keeps what the
	// last one saw.
	if obs.ReconcileErr == nil || st.Storage == nil {
		st.Storage = storageStatus(cc, obs.Claims)
	}
	// The cluster counts as created once a rollout has finished with every
	// pod ready; until then, missing or unready pods are not a degradation.
	created := st.CurrentImage != ""
	for _, c := range []metav1.Condition{
		availableCondition(cc, obs),
		progressingCondition(cc, obs, created),
		degradedCondition(cc, obs, created),
	} {
		setCondition(&st.Conditions, c, cc.Generation, now)
	}
	return st
}

// pausedStatus is cc's status while the pause annotation is set: only
// Progressing changes (False, ReconciliationPaused), and observedGeneration
// stays at the last generation the operator acted on.
func pausedStatus(cc *chatv1alpha1.ChatCluster, now metav1.Time) chatv1alpha1.ChatClusterStatus {
	st := *cc.Status.DeepCopy()
	setCondition(&st.Conditions, metav1.Condition{
		Type:    chatv1alpha1.ConditionProgressing,
		Status:  metav1.ConditionFalse,
		Reason:  ReasonPaused,
		Message: fmt.Sprintf("reconciliation is paused by the annotation %s=true; remove it to resume", AnnotationPauseReconcile),
	}, cc.Generation, now)
	return st
}

func setCondition(conds *[]metav1.Condition, c metav1.Condition, generation int64, now metav1.Time) {
	c.ObservedGeneration = generation
	c.LastTransitionTime = now // kept by SetStatusCondition when the status does not change
	meta.SetStatusCondition(conds, c)
}

// majority is the strict majority of n nodes, what a chatd node must see to
// accept messages (its expected cluster size).
func majority(n int32) int32 { return n/2 + 1 }

// availableCondition: clients can connect and send when a majority of the
// expected nodes is ready (a ready chatd node sees a majority, so it accepts
// messages).
func availableCondition(cc *chatv1alpha1.ChatCluster, obs observed) metav1.Condition {
	c := metav1.Condition{Type: chatv1alpha1.ConditionAvailable}
	desired := cc.DesiredReplicas()
	if desired == 0 {
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, chatv1alpha1.ReasonScaledToZero, "replicas is 0: no chatd node runs"
		return c
	}
	var ready int32
	if obs.StatefulSet != nil {
		ready = obs.StatefulSet.Status.ReadyReplicas
	}
	expected := max(obs.Plan.ExpectedNodes, desired)
	need := majority(expected)
	switch {
	case ready >= desired && ready >= need:
		c.Status, c.Reason = metav1.ConditionTrue, chatv1alpha1.ReasonAllReplicasReady
		c.Message = fmt.Sprintf("%d of %d nodes ready", ready, desired)
	case ready >= need:
		c.Status, c.Reason = metav1.ConditionTrue, chatv1alpha1.ReasonQuorumReady
		c.Message = fmt.Sprintf("%d of %d nodes ready, a majority of %d: messages are accepted with less redundancy", ready, desired, expected)
	default:
		c.Status, c.Reason = metav1.ConditionFalse, chatv1alpha1.ReasonQuorumLost
		c.Message = fmt.Sprintf("%d of %d nodes ready; %d needed for a majority of %d", ready, desired, need, expected)
	}
	return c
}

// progressingCondition: True while the StatefulSet is created, scaled or
// rolled; False once every pod runs the current template.
func progressingCondition(cc *chatv1alpha1.ChatCluster, obs observed, created bool) metav1.Condition {
	c := metav1.Condition{Type: chatv1alpha1.ConditionProgressing, Status: metav1.ConditionTrue}
	sts := obs.StatefulSet
	desired := cc.DesiredReplicas()
	if sts == nil {
		c.Reason, c.Message = chatv1alpha1.ReasonCreating, "creating the StatefulSet"
		if len(obs.MissingSecrets) > 0 {
			c.Message = "waiting for the Secrets the spec refers to before creating the StatefulSet"
		}
		return c
	}
	spec := stsReplicas(sts)
	s := sts.Status
	switch {
	case desired < spec || s.Replicas > spec:
		c.Reason = chatv1alpha1.ReasonScalingDown
		c.Message = fmt.Sprintf("scaling down one node at a time: %d pods, %d wanted", max(spec, s.Replicas), desired)
	case !created:
		c.Reason = chatv1alpha1.ReasonCreating
		c.Message = fmt.Sprintf("%d of %d pods exist, %d ready", s.Replicas, desired, s.ReadyReplicas)
	case desired > spec || s.Replicas < spec:
		c.Reason = chatv1alpha1.ReasonScalingUp
		c.Message = fmt.Sprintf("%d of %d pods exist", s.Replicas, desired)
	case !rolloutDone(sts):
		c.Reason = chatv1alpha1.ReasonRollingUpdate
		c.Message = fmt.Sprintf("%d of %d pods run the current template", s.UpdatedReplicas, spec)
	default:
		c.Status, c.Reason = metav1.ConditionFalse, chatv1alpha1.ReasonUpToDate
		c.Message = fmt.Sprintf("%d pods run the current template", spec)
	}
	return c
}

// degradedCondition: True when the operator cannot reconcile, a referenced
// Secret is missing, a volume cannot grow to spec.storage.size, or fewer
// pods are ready than wanted (not while the cluster is first created).
func degradedCondition(cc *chatv1alpha1.ChatCluster, obs observed, created bool) metav1.Condition {
	c := metav1.Condition{Type: chatv1alpha1.ConditionDegraded, Status: metav1.ConditionTrue}
	desired := cc.DesiredReplicas()
	var ready int32
	if obs.StatefulSet != nil {
		ready = obs.StatefulSet.Status.ReadyReplicas
	}
	switch {
	case obs.ReconcileErr != nil:
		c.Reason, c.Message = chatv1alpha1.ReasonReconcileFailed, obs.ReconcileErr.Error()
	case len(obs.MissingSecrets) > 0:
		c.Reason, c.Message = chatv1alpha1.ReasonSecretNotFound, strings.Join(obs.MissingSecrets, "; ")
	case obs.ResizeErr != nil:
		c.Reason, c.Message = chatv1alpha1.ReasonVolumeResizeFailed, obs.ResizeErr.Error()
	case ready < desired && created:
		c.Reason = chatv1alpha1.ReasonReplicasNotReady
		c.Message = fmt.Sprintf("%d of %d nodes ready", ready, desired)
	default:
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, chatv1alpha1.ReasonAsExpected, "nothing to report"
	}
	return c
}

// rolloutDone reports whether the StatefulSet controller has seen the
// current spec and every pod runs the current revision.
func rolloutDone(sts *appsv1.StatefulSet) bool {
	s := sts.Status
	return s.ObservedGeneration >= sts.Generation && s.ObservedGeneration > 0 &&
		s.Replicas == stsReplicas(sts) && s.UpdatedReplicas == s.Replicas &&
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
