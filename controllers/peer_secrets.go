package controllers

import (
	"context"
	"fmt"
	"time"

	chatv1alpha1 "github.com/ringchat/ringchat/api/v1alpha1"
	"github.com/ringchat/ringchat/controllers/peerpki"
	"github.com/ringchat/ringchat/controllers/resources"
	"github.com/ringchat/ringchat/controllers/scaling"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// eventRotationRefused is the reason of the Warning event of a gossip key
// rotation step the operator did not apply.
const eventRotationRefused = "GossipKeyRotationRefused"

// applySecrets creates or updates the Secrets the operator generates: the
// pods' ServiceAccount first (not a Secret, but nothing depends on the
// order), the gossip keyring (unless spec.gossip names one; with the
// rotation step the ChatCluster's annotation asks for), the admin token,
// the inter-node CA, and the pods' certificates issued by that CA for every
// pod that exists or is planned. It returns the CA and how long until the
// first certificate falls due for renewal (0 when none is held).
func (r *ChatClusterReconciler) applySecrets(ctx context.Context, cc *chatv1alpha1.ChatCluster, current *appsv1.StatefulSet, plan scaling.Plan) (*peerpki.CA, time.Duration, error) {
	now := r.now()
	rotation := cc.Annotations[chatv1alpha1.AnnotationGossipKeyRotation]
	if _, err := r.apply(ctx, cc, resources.ServiceAccountBuilder{}); err != nil {
		return nil, 0, err
	}
	if cc.NeedsGeneratedGossipKeyring() {
		obj, err := r.apply(ctx, cc, resources.GossipKeyringBuilder{Rotation: rotation})
		if err != nil {
			return nil, 0, err
		}
		s := obj.(*corev1.Secret)
		keys := resources.KeyringKeys(s.Data[chatv1alpha1.DefaultGossipKeyringKey])
		last := s.Annotations[chatv1alpha1.AnnotationGossipKeyringStep]
		if rotation != "" && rotation != last {
			r.Recorder.Eventf(cc, s, corev1.EventTypeWarning, eventRotationRefused, "Rotate", "%v",
				resources.CheckRotation(len(keys), last, rotation))
		}
	} else if rotation != "" {
		r.Recorder.Eventf(cc, nil, corev1.EventTypeWarning, eventRotationRefused, "Rotate",
			"%s is ignored: spec.gossip.keyringSecretRef names the keyring, which the operator never writes; rotate its keys in that Secret", chatv1alpha1.AnnotationGossipKeyRotation)
	}
	if _, err := r.apply(ctx, cc, resources.AdminSecretBuilder{}); err != nil {
		return nil, 0, err
	}
	if cc.ServerAPIEnabled() {
		if _, err := r.apply(ctx, cc, resources.APISecretBuilder{}); err != nil {
			return nil, 0, err
		}
	}
	obj, err := r.apply(ctx, cc, resources.PeerCABuilder{Now: now})
	if err != nil {
		return nil, 0, err
	}
	caSecret := obj.(*corev1.Secret)
	ca, err := peerpki.LoadCA(caSecret.Data[corev1.TLSCertKey], caSecret.Data[corev1.TLSPrivateKeyKey])
	if err != nil {
		err = fmt.Errorf("peer CA in Secret %s: %w (delete it for a new CA: every pod then gets a new certificate)", caSecret.Name, err)
		r.Recorder.Eventf(cc, caSecret, corev1.EventTypeWarning, eventFailed, "Reconcile", "%v", err)
		return nil, 0, err
	}
	renewBefore := cc.PeerRenewBefore()
	obj, err = r.apply(ctx, cc, resources.PeerTLSBuilder{
		CA:          ca,
		Pods:        certifiedPods(current, plan),
		Now:         now,
		Duration:    cc.PeerCertificateDuration(),
		RenewBefore: renewBefore,
	})
	if err != nil {
		return nil, 0, err
	}
	var renewal time.Duration
	if due, ok := resources.PeerRenewal(obj.(*corev1.Secret), renewBefore); ok {
		// A second after it falls due, so that the reconcile sees it due.
		renewal = max(due.Sub(now)+time.Second, time.Second)
	}
	return ca, renewal, nil
}

// certifiedPods is how many pod ordinals need a certificate: every pod the
// StatefulSet has or asks for, and every pod of the plan (issued before the
// StatefulSet grows, so that a new pod finds its files when it starts).
func certifiedPods(current *appsv1.StatefulSet, plan scaling.Plan) int32 {
	n := plan.Replicas
	if current != nil {
		if current.Spec.Replicas != nil {
			n = max(n, *current.Spec.Replicas)
		}
		n = max(n, current.Status.Replicas, current.Status.CurrentReplicas, current.Status.UpdatedReplicas)
	}
	return n
}
