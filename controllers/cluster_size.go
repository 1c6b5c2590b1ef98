package controllers

import (
	"context"
	"fmt"
	"time"

	chatv1alpha1 "github.com/ringchat/ringchat/api/v1alpha1"
	"github.com/ringchat/ringchat/controllers/clustersize"
	"github.com/ringchat/ringchat/controllers/scaling"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
)

// sizeSync follows, within one reconcile, which cluster size each pod of a
// ChatCluster's StatefulSet applies, and asks the pods that are behind to
// catch up. It asks the pods at most once per reconcile, and only while the
// StatefulSet's last size change is younger than SizePropagation: past
// that, the kubelet has updated every pod's mounted ConfigMap by itself, and
// the reconciler trusts it as it did before it could ask (so pods it cannot
// reach — a NetworkPolicy, say — slow a step down to that bound, never stop
// it).
type sizeSync struct {
	r   *ChatClusterReconciler
	cc  *chatv1alpha1.ChatCluster
	now time.Time
	// reports are the pods' answers, once asked.
	reports []clustersize.Report
	asked   bool
}

func (r *ChatClusterReconciler) newSizeSync(cc *chatv1alpha1.ChatCluster, now time.Time) *sizeSync {
	return &sizeSync{r: r, cc: cc, now: now}
}

// deadline is when the StatefulSet's last size change has reached every
// pod even if no pod could be asked.
func (s *sizeSync) deadline(sts *appsv1.StatefulSet) time.Time {
	return scaling.ExpectedNodesChangedAt(sts).Add(orDefault(s.r.SizePropagation, DefaultSizePropagation))
}

// applied reports whether every pod of sts applies the cluster size sts
// records (scaling.Next's sizeApplied).
func (s *sizeSync) applied(ctx context.Context, sts *appsv1.StatefulSet) (bool, error) {
	if !s.now.Before(s.deadline(sts)) {
		return true, nil
	}
	reports, err := s.observe(ctx, sts)
	if err != nil {
		return false, err
	}
	return clustersize.AllApply(reports, scaling.Current(sts).ExpectedNodes), nil
}

// converge asks the pods of sts that do not apply the size sts records to
// resync it (see clustersize.Nudge), while its last change is younger than
// SizePropagation. It returns which pods are behind ("" when none) and how
// soon to look again.
func (s *sizeSync) converge(ctx context.Context, sts *appsv1.StatefulSet) (behind string, again time.Duration, err error) {
	deadline := s.deadline(sts)
	if !s.now.Before(deadline) {
		return "", 0, nil
	}
	size := scaling.Current(sts).ExpectedNodes
	reports, err := s.observe(ctx, sts)
	if err != nil {
		return "", 0, err
	}
	if clustersize.AllApply(reports, size) {
		return "", 0, nil
	}
	resync := orDefault(s.r.SizeResync, DefaultSizeResync)
	for _, rep := range reports {
		if clustersize.NeedsNudge(rep, size, s.now, resync) {
			s.nudge(ctx, rep, size)
		}
	}
	return clustersize.Behind(reports, size), min(orDefault(s.r.SizePoll, DefaultSizePoll), deadline.Sub(s.now)), nil
}

// nudge writes the annotations that make rep's pod resync its mounted
// ConfigMap. A failure is logged, not returned: the kubelet resyncs the pod
// within its sync period anyway, and the next reconcile asks again.
func (s *sizeSync) nudge(ctx context.Context, rep clustersize.Report, size int32) {
	pod := rep.Pod
	orig := pod.DeepCopy()
	clustersize.Nudge(pod, size, s.now)
	logger := log.FromContext(ctx)
	if err := s.r.Patch(ctx, pod, client.MergeFrom(orig)); err != nil && !apierrors.IsNotFound(err) {
		logger.Error(err, "asking a pod to resync its cluster size", "pod", pod.Name, "size", size)
		return
	}
	applies := fmt.Sprint(rep.Applied)
	if rep.Err != nil {
		applies = rep.Err.Error()
	}
	logger.V(1).Info("asked a pod to resync its cluster size", "pod", pod.Name, "size", size, "applies", applies)
}

// observe asks every pod of sts which size it applies, once per reconcile.
func (s *sizeSync) observe(ctx context.Context, sts *appsv1.StatefulSet) ([]clustersize.Report, error) {
	if s.asked {
		return s.reports, nil
	}
	pods, err := s.r.podsOf(ctx, s.cc, sts)
	if err != nil {
		return nil, err
	}
	prober := s.r.Prober
	if prober == nil {
		prober = defaultProber
	}
	s.reports, s.asked = clustersize.Observe(ctx, prober, pods), true
	return s.reports, nil
}

// podsOf lists the pods sts controls, from the API server (the manager does
// not cache pods; see ClientOptions).
func (r *ChatClusterReconciler) podsOf(ctx context.Context, cc *chatv1alpha1.ChatCluster, sts *appsv1.StatefulSet) ([]corev1.Pod, error) {
	var list corev1.PodList
	if err := r.List(ctx, &list, client.InNamespace(cc.Namespace), client.MatchingLabels(cc.SelectorLabels())); err != nil {
		return nil, fmt.Errorf("listing the pods: %w", err)
	}
	var out []corev1.Pod
	for _, p := range list.Items {
		if ref := metav1.GetControllerOf(&p); ref != nil && ref.UID == sts.UID {
			out = append(out, p)
		}
	}
	return out, nil
}
