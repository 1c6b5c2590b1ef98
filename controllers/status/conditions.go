package status

import (
	"fmt"
	"strings"

	chatv1alpha1 "github.com/ringchat/ringchat/api/v1alpha1"
	"github.com/ringchat/ringchat/controllers/scaling"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// majority is the strict majority of n nodes, what a chatd node must see to
// accept messages (its expected cluster size).
func majority(n int32) int32 { return n/2 + 1 }

// Available is the Available condition: clients can connect and send when a
// majority of the expected nodes is ready (a ready chatd node sees a
// majority, so it accepts messages).
func Available(cc *chatv1alpha1.ChatCluster, obs Observed) metav1.Condition {
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

// Progressing is the Progressing condition: True while the StatefulSet is
// created, scaled or rolled; False once every pod runs the current
// template. created says whether a rollout has ever finished with every pod
// ready. While a scaling step waits for pods to apply a new cluster size,
// the message says which.
func Progressing(cc *chatv1alpha1.ChatCluster, obs Observed, created bool) metav1.Condition {
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
	spec := scaling.Replicas(sts)
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
	if c.Status == metav1.ConditionTrue && obs.AwaitingSize != "" {
		c.Message += fmt.Sprintf("; waiting for every pod to apply a cluster size of %d: %s", obs.Plan.ExpectedNodes, obs.AwaitingSize)
	}
	return c
}

// Degraded is the Degraded condition: True when the operator cannot
// reconcile, a referenced Secret is missing, a volume cannot grow to
// spec.storage.size, or fewer pods are ready than wanted (not while the
// cluster is first created: see Progressing's created).
func Degraded(cc *chatv1alpha1.ChatCluster, obs Observed, created bool) metav1.Condition {
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
