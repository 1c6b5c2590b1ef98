package clustersize

import (
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Annotations the operator writes on a chatd pod that does not apply the
// cluster size of its StatefulSet yet. Writing them changes the pod, which
// makes its kubelet sync it at once and so rewrite the mounted ConfigMap
// (the kubelet refreshes such volumes at every sync of the pod) instead of
// at its next periodic sync, up to a minute later.
const (
	// AnnotationExpectedNodes is the cluster size the pod is asked to apply.
	AnnotationExpectedNodes = "chat.ringchat.io/expected-nodes"
	// AnnotationRequestedAt is when the operator last asked (RFC 3339).
	AnnotationRequestedAt = "chat.ringchat.io/expected-nodes-requested-at"
)

// NeedsNudge reports whether the operator should write the annotations on
// r's pod so that it applies size: it does not say it applies size, it
// runs (a pod without an IP has not started: its kubelet mounts the
// ConfigMap as it is then), it is not being deleted, and it has not been
// asked for size yet, or was asked longer than resync ago (its kubelet may
// have synced before its copy of the ConfigMap had the new size).
func NeedsNudge(r Report, size int32, now time.Time, resync time.Duration) bool {
	pod := r.Pod
	if r.Applies(size) || pod.DeletionTimestamp != nil || pod.Status.PodIP == "" {
		return false
	}
	if pod.Annotations[AnnotationExpectedNodes] != strconv.Itoa(int(size)) {
		return true
	}
	at, err := time.Parse(time.RFC3339Nano, pod.Annotations[AnnotationRequestedAt])
	return err != nil || !now.Before(at.Add(resync))
}

// Nudge sets on pod the annotations that ask it to apply size, at now.
func Nudge(pod *corev1.Pod, size int32, now time.Time) {
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations[AnnotationExpectedNodes] = strconv.Itoa(int(size))
	pod.Annotations[AnnotationRequestedAt] = now.UTC().Format(time.RFC3339Nano)
}
