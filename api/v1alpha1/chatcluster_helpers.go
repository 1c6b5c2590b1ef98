package v1alpha1

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Defaults of the spec. They repeat the +kubebuilder:default markers of
// chatcluster_types.go, so that the helpers below give the same answer for
// an object the API server has defaulted and for one built in Go (tests,
// a client) that left the field empty. Keep both in step.
const (
	DefaultReplicas          int32 = 3
	DefaultImage                   = "ringchat/chatd:dev"
	DefaultImagePullPolicy         = corev1.PullIfNotPresent
	DefaultHistorySize       int32 = 1000
	DefaultReplicationFactor int32 = 2
	DefaultServiceType             = corev1.ServiceTypeClusterIP
	DefaultServicePort       int32 = 80
	DefaultDrainTimeout            = 25 * time.Second
	DefaultShutdownTimeout         = 20 * time.Second

	// DefaultPeerCertificateDuration and DefaultPeerRenewBefore are
	// spec.peerTLS's defaults: 90-day certificates replaced 30 days before
	// they expire.
	DefaultPeerCertificateDuration = 90 * 24 * time.Hour
	DefaultPeerRenewBefore         = 30 * 24 * time.Hour

	// DefaultPDBMaxUnavailable is the budget when spec.podDisruptionBudget
	// sets neither field.
	DefaultPDBMaxUnavailable = 1

	// Default keys of the Secret selectors (also the keys of the generated
	// Secret).
	DefaultJWTSecretKey     = "jwt-secret"
	DefaultJWTPublicKeyKey  = "jwt-public-key"
	DefaultGossipKeyringKey = "keyring"
	DefaultJWKSKey          = "jwks.json"
	// DefaultAdminTokenKey is the key of the generated admin token Secret.
	DefaultAdminTokenKey = "token"
	// DefaultAPIKeysKey is the key of the generated server API key Secret.
	DefaultAPIKeysKey = "keys"

	// MaxClusterLabelLength is the longest spec.gossip.clusterLabel, and the
	// longest label ClusterLabel derives.
	MaxClusterLabelLength = 64

	// DefaultRetentionMaxAge is spec.storage.retention.maxAge when left
	// out (chatd's --history-retention default: 30 days).
	DefaultRetentionMaxAge = 720 * time.Hour
	// MaxDefaultStorageReserve caps the reserve derived from
	// spec.storage.size when spec.storage.reserve is left out (chatd's own
	// --storage-reserve-bytes default).
	MaxDefaultStorageReserve int64 = 256 << 20

	chatdDefaultSendQueue      = 4096 // chatd --send-queue default
	chatdSendQueueHistorySlack = 16   // chatd: --send-queue >= --history-size + 16
)

// Labels and annotations the operator puts on the objects it owns.
const (
	// LabelName is app.kubernetes.io/name; its value on chatd pods is
	// LabelNameValue. Part of the pod selector.
	LabelName      = "app.kubernetes.io/name"
	LabelNameValue = "chatd"
	// LabelCluster carries the ChatCluster's name. Part of the pod selector.
	LabelCluster = "chat.ringchat.io/cluster"
	// AnnotationConfigHash on the pod template carries ConfigHash; a change
	// rolls the pods.
	AnnotationConfigHash = "chat.ringchat.io/config-hash"
)

// AnnotationPauseReconcile set to "true" on a ChatCluster stops the operator
// from changing anything of it (its objects, and its status but for the
// Progressing condition, which says ReasonPaused) until the annotation is
// removed or set to another value. For maintenance by hand.
const AnnotationPauseReconcile = "chat.ringchat.io/pause-reconcile"

// AnnotationGossipKeyRotation on a ChatCluster asks the operator for one
// step of a rotation of its generated gossip keyring: "add" (a new key
// after the primary), "promote" (the new key first, so primary), "remove"
// (the old key dropped). Each step is applied once, in that order, and
// recorded on the keyring Secret (AnnotationGossipKeyringStep); wait until
// every pod has read a step (chatd_gossip_keys, about a minute and a half)
// before asking for the next. Ignored, with a Warning event, when
// spec.gossip names the user's own keyring.
const AnnotationGossipKeyRotation = "chat.ringchat.io/gossip-key-rotation"

// AnnotationGossipKeyringStep on the generated gossip keyring Secret is the
// last rotation step the operator applied to it.
const AnnotationGossipKeyringStep = "chat.ringchat.io/gossip-keyring-step"

// The steps of a gossip key rotation (AnnotationGossipKeyRotation).
const (
	GossipRotationAdd     = "add"
	GossipRotationPromote = "promote"
	GossipRotationRemove  = "remove"
)

// Names of the volume that holds a pod's history (spec.storage).
const (
	// DataVolumeName is the name of the StatefulSet's volumeClaimTemplate,
	// so each pod's PersistentVolumeClaim is data-<cluster>-<ordinal>.
	DataVolumeName = "data"
	// DataMountPath is where the volume is mounted in the chatd container,
	// and chatd's --data-dir.
	DataMountPath = "/var/lib/chatd"
)

// PreStopSleepSeconds is how long a stopping chatd pod keeps serving as
// usual before it gets SIGTERM (a preStop sleep; the image has no shell):
// the time for its removal from the Service's endpoints to reach every
// kube-proxy and load balancer, so that new clients stop arriving before
// chatd starts refusing them.
const PreStopSleepSeconds = 5

// terminationGraceExtra is the grace the pod gets beyond drainTimeout +
// shutdownTimeout: the preStop sleep, chatd's leave of the gossip cluster
// (up to 5 s after the shutdown), and a margin.
const terminationGraceExtra = PreStopSleepSeconds*time.Second + 10*time.Second

// storageCloseGrace is the extra grace of a pod with a volume: after its
// shutdown chatd syncs and closes its store. Killed during it, nothing
// acknowledged is lost (it is on disk already), but the next start replays
// the store's log.
const storageCloseGrace = 10 * time.Second

// DesiredReplicas is spec.replicas, or its default when unset.
func (c *ChatCluster) DesiredReplicas() int32 {
	if c.Spec.Replicas == nil {
		return DefaultReplicas
	}
	return *c.Spec.Replicas
}

// ImageOrDefault is spec.image, or its default when empty.
func (c *ChatCluster) ImageOrDefault() string {
	if c.Spec.Image == "" {
		return DefaultImage
	}
	return c.Spec.Image
}

// ImagePullPolicyOrDefault is spec.imagePullPolicy, or its default when empty.
func (c *ChatCluster) ImagePullPolicyOrDefault() corev1.PullPolicy {
	if c.Spec.ImagePullPolicy == "" {
		return DefaultImagePullPolicy
	}
	return c.Spec.ImagePullPolicy
}

// HistorySize is spec.historySize (chatd --history-size), or its default.
func (c *ChatCluster) HistorySize() int32 {
	if c.Spec.HistorySize == 0 {
		return DefaultHistorySize
	}
	return c.Spec.HistorySize
}

// ReplicationFactor is spec.replicationFactor (chatd --replication-factor),
// or its default.
func (c *ChatCluster) ReplicationFactor() int32 {
	if c.Spec.ReplicationFactor == 0 {
		return DefaultReplicationFactor
	}
	return c.Spec.ReplicationFactor
}

// SendQueue is the chatd --send-queue the operator must pass: chatd refuses
// to start unless the queue exceeds the history size by 16 (a full resume
// replay must fit), and its default of 4096 is too small for a historySize
// above 4080.
func (c *ChatCluster) SendQueue() int32 {
	return max(chatdDefaultSendQueue, c.HistorySize()+chatdSendQueueHistorySlack)
}

// DrainTimeout is spec.drainTimeout (chatd --drain-timeout), or its default.
func (c *ChatCluster) DrainTimeout() time.Duration {
	if c.Spec.DrainTimeout == nil {
		return DefaultDrainTimeout
	}
	return c.Spec.DrainTimeout.Duration
}

// ShutdownTimeout is spec.shutdownTimeout (chatd --shutdown-timeout), or its
// default.
func (c *ChatCluster) ShutdownTimeout() time.Duration {
	if c.Spec.ShutdownTimeout == nil {
		return DefaultShutdownTimeout
	}
	return c.Spec.ShutdownTimeout.Duration
}

// TerminationGracePeriodSeconds is the pods' terminationGracePeriodSeconds:
// on SIGTERM chatd drains (up to drainTimeout: it hands its rooms off),
// shuts down (up to shutdownTimeout), leaves the gossip cluster (up to 5 s)
// and, with storage, closes its store; the kubelet must not kill it before.
// A pod scaled away loses its volume only once it is gone, so the grace
// period is also what bounds its handoff. Rounded up to whole seconds.
func (c *ChatCluster) TerminationGracePeriodSeconds() int64 {
	d := c.DrainTimeout() + c.ShutdownTimeout() + terminationGraceExtra
	if c.Spec.Storage != nil {
		d += storageCloseGrace
	}
	return int64((d + time.Second - 1) / time.Second)
}

// DataClaimName is the PersistentVolumeClaim of the pod with the given
// ordinal when spec.storage is set (the StatefulSet controller's naming:
// <template>-<StatefulSet>-<ordinal>).
func (c *ChatCluster) DataClaimName(ordinal int32) string {
	return DataVolumeName + "-" + c.Name + "-" + strconv.FormatInt(int64(ordinal), 10)
}

// MaxAgeOrDefault is retention.maxAge (chatd --history-retention), or its default;
// 0 keeps messages for ever.
func (r *RetentionSpec) MaxAgeOrDefault() time.Duration {
	if r.MaxAge == nil {
		return DefaultRetentionMaxAge
	}
	return r.MaxAge.Duration
}

// MaxMessagesOrDefault is retention.maxMessages (chatd
// --history-max-messages); 0, the default, means no count limit.
func (r *RetentionSpec) MaxMessagesOrDefault() int64 {
	if r.MaxMessages == nil {
		return 0
	}
	return *r.MaxMessages
}

// ReserveBytes is chatd --storage-reserve-bytes: reserve, or when left
// out a quarter of size, at most MaxDefaultStorageReserve (so that a small
// volume is not all reserve).
func (s *StorageSpec) ReserveBytes() int64 {
	if s.Reserve != nil {
		return s.Reserve.Value()
	}
	return min(MaxDefaultStorageReserve, s.Size.Value()/4)
}

// ExpectedNodes is the cluster size the pods are meant to apply once every
// change has finished (chatd --expected-nodes-file): what a node checks that
// it sees a majority of (split-brain protection).
func (c *ChatCluster) ExpectedNodes() int32 {
	return c.DesiredReplicas()
}

// ServiceName is the name of the client Service: the ChatCluster's name.
func (c *ChatCluster) ServiceName() string { return c.Name }

// HeadlessServiceName is the name of the headless Service through which the
// nodes find each other (chatd --join); it publishes not-ready addresses.
func (c *ChatCluster) HeadlessServiceName() string { return c.Name + "-headless" }

// GossipKeyringSecretName is the name of the Secret holding the gossip
// keyring the operator generates when spec.gossip.keyringSecretRef is left
// out (key DefaultGossipKeyringKey).
func (c *ChatCluster) GossipKeyringSecretName() string { return c.Name + "-gossip-keyring" }

// NeedsGeneratedGossipKeyring reports whether the operator must create (and
// may rotate) the Secret named by GossipKeyringSecretName.
func (c *ChatCluster) NeedsGeneratedGossipKeyring() bool {
	return c.Spec.Gossip.KeyringSecretRef == nil
}

// EffectiveGossipKeyringRef is where the gossip keyring is: the user's
// Secret, or the generated one.
func (c *ChatCluster) EffectiveGossipKeyringRef() corev1.SecretKeySelector {
	if r := c.Spec.Gossip.KeyringSecretRef; r != nil {
		return selector(r.Name, r.Key, DefaultGossipKeyringKey)
	}
	return selector(c.GossipKeyringSecretName(), "", DefaultGossipKeyringKey)
}

// PeerCASecretName is the name of the Secret holding the ChatCluster's
// inter-node CA (certificate and private key). Only the operator reads it;
// no pod mounts it.
func (c *ChatCluster) PeerCASecretName() string { return c.Name + "-peer-ca" }

// PeerTLSSecretName is the name of the Secret holding every pod's
// inter-node certificate and key (<pod>.crt, <pod>.key) and the CA
// certificate (ca.crt), mounted in every pod.
func (c *ChatCluster) PeerTLSSecretName() string { return c.Name + "-peer-tls" }

// AdminSecretName is the name of the Secret holding the admin API's bearer
// token the operator generates (key DefaultAdminTokenKey).
func (c *ChatCluster) AdminSecretName() string { return c.Name + "-admin" }

// APISecretName is the name of the Secret holding the server API's keys
// the operator generates (key DefaultAPIKeysKey) when spec.serverAPI is
// enabled.
func (c *ChatCluster) APISecretName() string { return c.Name + "-api" }

// ServerAPIEnabled reports whether spec.serverAPI turns the server API on.
func (c *ChatCluster) ServerAPIEnabled() bool {
	return c.Spec.ServerAPI != nil && c.Spec.ServerAPI.Enabled
}

// MetricsServiceName is the name of the Service in front of the pods'
// admin listeners (/metrics), for Prometheus.
func (c *ChatCluster) MetricsServiceName() string { return c.Name + "-metrics" }

// NetworkPolicyName is the name of the chatd pods' NetworkPolicy.
func (c *ChatCluster) NetworkPolicyName() string { return c.Name + "-chatd" }

// PodName is the name of the chatd pod of ordinal i (the StatefulSet's
// naming).
func (c *ChatCluster) PodName(i int32) string { return fmt.Sprintf("%s-%d", c.Name, i) }

// NetworkPolicyEnabled reports whether the operator manages the chatd pods'
// NetworkPolicy (spec.networkPolicy.enabled, true when left out).
func (c *ChatCluster) NetworkPolicyEnabled() bool {
	e := c.Spec.NetworkPolicy.Enabled
	return e == nil || *e
}

// PeerCertificateDuration is spec.peerTLS.certificateDuration, or its
// default.
func (c *ChatCluster) PeerCertificateDuration() time.Duration {
	if d := c.Spec.PeerTLS.CertificateDuration; d != nil && d.Duration > 0 {
		return d.Duration
	}
	return DefaultPeerCertificateDuration
}

// PeerRenewBefore is spec.peerTLS.renewBefore, or its default; half the
// certificate's duration when it is not shorter than the duration (CEL
// refuses that; this guards objects written before the rule, which would
// otherwise renew at every reconcile).
func (c *ChatCluster) PeerRenewBefore() time.Duration {
	d := DefaultPeerRenewBefore
	if r := c.Spec.PeerTLS.RenewBefore; r != nil && r.Duration > 0 {
		d = r.Duration
	}
	if dur := c.PeerCertificateDuration(); d >= dur {
		return dur / 2
	}
	return d
}

// Selector returns the selector as a Secret key selector, with the default
// key when Key is empty.
func (r *JWTSecretKeySelector) Selector() corev1.SecretKeySelector {
	return selector(r.Name, r.Key, DefaultJWTSecretKey)
}

// Selector returns the selector as a Secret key selector, with the default
// key when Key is empty.
func (r *JWTPublicKeySelector) Selector() corev1.SecretKeySelector {
	return selector(r.Name, r.Key, DefaultJWTPublicKeyKey)
}

// Selector returns the selector as a Secret key selector, with the default
// key when Key is empty.
func (r *JWKSSecretKeySelector) Selector() corev1.SecretKeySelector {
	return selector(r.Name, r.Key, DefaultJWKSKey)
}

func selector(name, key, def string) corev1.SecretKeySelector {
	if key == "" {
		key = def
	}
	return corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: name}, Key: key}
}

// ClusterLabel is chatd --cluster-label: spec.gossip.clusterLabel, or else
// "<namespace>/<name>". The derived label is stable (namespace and name
// never change) and unique in the Kubernetes cluster; when it would exceed
// MaxClusterLabelLength it keeps a prefix and ends with a hash of the whole.
func (c *ChatCluster) ClusterLabel() string {
	if l := c.Spec.Gossip.ClusterLabel; l != "" {
		return l
	}
	return sanitizeLabel(c.Namespace + "/" + c.Name)
}

// sanitizeLabel maps s onto the clusterLabel pattern (letters, digits, '-',
// '_', '.', '/', starting and ending with a letter or digit) and length.
func sanitizeLabel(s string) string {
	b := []byte(s)
	for i, ch := range b {
		switch {
		case ch >= 'a' && ch <= 'z', ch >= 'A' && ch <= 'Z', ch >= '0' && ch <= '9',
			ch == '-', ch == '_', ch == '.', ch == '/':
		default:
			b[i] = '-'
		}
	}
	out := strings.Trim(string(b), "-_./")
	if len(out) > MaxClusterLabelLength {
		sum := sha256.Sum256([]byte(s))
		h := hex.EncodeToString(sum[:])[:10]
		prefix := strings.TrimRight(out[:MaxClusterLabelLength-len(h)-1], "-_./")
		out = prefix + "-" + h
	}
	if out == "" {
		out = "ringchat"
	}
	return out
}

// SelectorLabels are the labels that select the cluster's pods; they never
// change for a ChatCluster (a workload's selector is immutable).
func (c *ChatCluster) SelectorLabels() map[string]string {
	return map[string]string{LabelName: LabelNameValue, LabelCluster: c.Name}
}

// SelectorString is SelectorLabels as a label selector string, for
// status.selector (the scale subresource).
func (c *ChatCluster) SelectorString() string {
	return labels.SelectorFromSet(c.SelectorLabels()).String()
}

// PDBBudget returns the PodDisruptionBudget's maxUnavailable and
// minAvailable: whichever the spec sets, or maxUnavailable 1. Exactly one
// of the two is non-nil.
func (c *ChatCluster) PDBBudget() (maxUnavailable, minAvailable *intstr.IntOrString) {
	if p := c.Spec.PodDisruptionBudget; p != nil {
		if p.MinAvailable != nil {
			v := *p.MinAvailable
			return nil, &v
		}
		if p.MaxUnavailable != nil {
			v := *p.MaxUnavailable
			return &v, nil
		}
	}
	v := intstr.FromInt32(DefaultPDBMaxUnavailable)
	return &v, nil
}

// Args returns the chatd flags for the limits that are set, in a fixed
// order; nil for a nil receiver.
func (l *LimitsSpec) Args() []string {
	if l == nil {
		return nil
	}
	var args []string
	add := func(flag string, v *int32) {
		if v != nil {
			args = append(args, "--"+flag+"="+strconv.FormatInt(int64(*v), 10))
		}
	}
	add("max-connections", l.MaxConnections)
	add("max-connections-per-ip", l.MaxConnectionsPerIP)
	add("max-text-bytes", l.MaxTextBytes)
	if l.Rate != "" {
		args = append(args, "--rate="+l.Rate)
	}
	add("rate-burst", l.RateBurst)
	return args
}

// Args are chatd's Socket.IO flags for this spec: none when it is nil
// (chatd's defaults), --socketio-namespaces= (the endpoint off) when it is
// disabled, otherwise the namespaces and the durations that are set.
func (s *SocketIOSpec) Args() []string {
	if s == nil {
		return nil
	}
	if s.Enabled != nil && !*s.Enabled {
		return []string{"--socketio-namespaces="}
	}
	var args []string
	if len(s.Namespaces) > 0 {
		names := make([]string, len(s.Namespaces))
		for i, ns := range s.Namespaces {
			names[i] = ns.Name
			if ns.TokenOnly {
				names[i] += ":token"
			}
		}
		args = append(args, "--socketio-namespaces="+strings.Join(names, ","))
	}
	if s.RecoveryWindow != nil {
		args = append(args, "--socketio-recovery-window="+s.RecoveryWindow.Duration.String())
	}
	if s.PingTimeout != nil {
		args = append(args, "--socketio-ping-timeout="+s.PingTimeout.Duration.String())
	}
	return args
}

// DefaultHookSecretKey is the key of spec.hooks.signingSecretRef's Secret
// when the reference names none.
const DefaultHookSecretKey = "hook-secret"

// Selector returns the Secret key reference, with the default key filled
// in.
func (s *HookSecretKeySelector) Selector() corev1.SecretKeySelector {
	key := s.Key
	if key == "" {
		key = DefaultHookSecretKey
	}
	return corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: s.Name}, Key: key}
}

// Args are chatd's flags for spec.hooks (none without hooks), except the
// signing secret's file, which the operator mounts (secretFile, given when
// a signingSecretRef is set).
func (h *HooksSpec) Args(secretFile string) []string {
	if h == nil {
		return nil
	}
	var args []string
	for _, hook := range []struct {
		name string
		spec *HookSpec
	}{{"connect", h.Connect}, {"join", h.Join}, {"send", h.Send}} {
		if hook.spec == nil {
			continue
		}
		args = append(args, "--hook-"+hook.name+"-url="+hook.spec.URL)
		if hook.spec.Timeout != nil {
			args = append(args, "--hook-"+hook.name+"-timeout="+hook.spec.Timeout.Duration.String())
		}
		if hook.spec.OnFailure != "" {
			args = append(args, "--hook-"+hook.name+"-on-failure="+hook.spec.OnFailure)
		}
	}
	if h.Retries != nil {
		args = append(args, "--hook-retries="+strconv.FormatInt(int64(*h.Retries), 10))
	}
	if h.BreakerFailures != nil {
		args = append(args, "--hook-breaker-failures="+strconv.FormatInt(int64(*h.BreakerFailures), 10))
	}
	if h.BreakerOpen != nil {
		args = append(args, "--hook-breaker-open="+h.BreakerOpen.Duration.String())
	}
	if h.SigningSecretRef != nil && secretFile != "" {
		args = append(args, "--hook-secret-file="+secretFile)
	}
	if es := h.EventStream; es != nil {
		args = append(args, "--event-stream-url="+es.URL)
		if es.Timeout != nil {
			args = append(args, "--event-stream-timeout="+es.Timeout.Duration.String())
		}
		if es.BatchSize != nil {
			args = append(args, "--event-stream-batch="+strconv.FormatInt(int64(*es.BatchSize), 10))
		}
	}
	return args
}
