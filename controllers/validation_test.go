package controllers

// The API server's validation of a ChatCluster, rule by rule: each CEL rule
// (x-kubernetes-validations) of api/v1alpha1 and the main OpenAPI schema
// rules (enums, minimums and maximums, patterns, lengths, required fields,
// list keys), each refused with its message on the field it names, and
// the boundary value next to it accepted.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	chatv1alpha1 "github.com/ringchat/ringchat/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// validationRow is one request to the API server, built from the sample
// (config/samples: 3 replicas, anonymous auth).
//
// A create row applies spec (typed) and then raw (the object as JSON, for
// values the typed struct leaves out, such as zero values of omitempty
// fields) and creates the result with a server-side dry run: the request goes
// through defaulting, schema and CEL validation and admission, and nothing is
// stored, so the operator has nothing to reconcile.
//
// An update row (update set) creates the object from spec for real, then
// applies update to the stored object and sends that as a dry-run update:
// the CEL transition rules (oldSelf) need a stored object.
//
// want empty: the request is accepted. Otherwise the API server must refuse
// it as Invalid with a cause on field whose message contains want, and, when
// absent is set, with no message (of any cause) containing absent.
type validationRow struct {
	name   string
	spec   func(*chatv1alpha1.ChatCluster)
	raw    func(obj map[string]any)
	update func(*chatv1alpha1.ChatCluster)
	field  string
	want   string
	absent string
}

// The messages of the CEL rules, as in api/v1alpha1/chatcluster_types.go.
const (
	msgReplicationFactor = "replicationFactor cannot exceed replicas"
	msgDrainTimeout      = "drainTimeout must be between 1s and 1h"
	msgRecoveryWindow    = "recoveryWindow must be at most 24h"
	msgPingTimeout       = "pingTimeout must be between 1s and 10m"
	msgShutdownTimeout   = "shutdownTimeout must be between 1s and 1h"
	msgBothJWT           = "set one of jwtSecretRef, jwtPublicKeySecretRef and jwksSecretRef, not several"
	msgNoAuth            = "no way to authenticate: set jwtSecretRef, jwtPublicKeySecretRef, jwksSecretRef or allowAnonymous (or a connect hook in spec.hooks)"
	msgHookTimeout       = "timeout must be between 10ms and 1m"
	msgBreakerOpen       = "breakerOpen must be between 100ms and 10m"
	msgGossipKeyring     = "gossip.keyringSecretRef is immutable: nodes without a common gossip key cannot talk, so switching to another Secret would split the running cluster; rotate the keys inside the Secret instead"
	msgPeerDuration      = "peerTLS.certificateDuration must be at least 1h"
	msgPeerRenewMin      = "peerTLS.renewBefore must be at least 10m"
	msgPeerRenewShorter  = "peerTLS.renewBefore must be shorter than peerTLS.certificateDuration"
	msgClusterLabel      = "gossip.clusterLabel is immutable: nodes with different labels never merge, so changing it would split the running cluster"
	msgNodePort          = "nodePort requires type NodePort or LoadBalancer"
	msgPodLabels         = "podTemplate.labels cannot set app.kubernetes.io/name or chat.ringchat.io/ labels: the operator uses them to select its pods"
	msgPodAnnotations    = "podTemplate.annotations cannot set chat.ringchat.io/ annotations: they are the operator's"
	msgPDBBoth           = "set podDisruptionBudget.maxUnavailable or podDisruptionBudget.minAvailable, not both"
	msgMaxUnavailable    = "must be a non-negative number or a percentage such as 25%"
	msgMinAvailable      = "must be a non-negative number or a percentage such as 50%"
	msgRate              = "rate must be greater than 0"
	msgName              = "metadata.name must be at most 52 characters of lower-case letters, digits and '-', starting with a letter: it names the cluster's pods and Services"
	msgStorageAddRemove  = "storage cannot be added to or removed from an existing ChatCluster: a StatefulSet's volume claims are fixed when it is created; create a new ChatCluster instead"
	msgStorageShrink     = "storage.size cannot shrink: a volume can only grow"
	msgStorageClass      = "storage.storageClassName is immutable: the volumes exist already; create a new ChatCluster to use another class"
	msgStorageReserve    = "storage.reserve must be less than storage.size: chatd refuses every new message while its free space is below the reserve"
	msgStorageMinSize    = "storage.size must be at least 64Mi"
)

// celCoveredElsewhere are the CEL rules whose refusal
// TestInvalidSpecsAreRefused (chatcluster_controller_test.go) already
// checks, with the text that test looks for; the table below has their
// accepted boundaries and their other branches only.
var celCoveredElsewhere = map[string]string{
	msgReplicationFactor: "replicationFactor cannot exceed replicas",
	msgBothJWT:           "set one of jwtSecretRef, jwtPublicKeySecretRef and jwksSecretRef, not several",
	msgNoAuth:            "no way to authenticate",
	msgPodLabels:         "podTemplate.labels cannot set",
	msgClusterLabel:      "gossip.clusterLabel is immutable",
}

// Schema messages of the API server (k8s.io/kube-openapi's validator and
// apimachinery's field errors).
func minimum(n int) string { return fmt.Sprintf("should be greater than or equal to %d", n) }
func maximum(n int) string { return fmt.Sprintf("should be less than or equal to %d", n) }
func maxLen(n int) string  { return fmt.Sprintf("may not be more than %d bytes", n) }

const (
	minLen1    = "should be at least 1 chars long"
	nameRE     = `should match '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$'`
	keyRE      = `should match '^[-._a-zA-Z0-9]+$'`
	durationRE = `should match '^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$'`

	// typeConversion is what a CEL rule reports when it converts a value
	// the field's pattern already refused (duration('soon'), double('fast')).
	typeConversion = "type conversion"
)

func dur(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }

// setRaw sets obj[path...] = v, creating the maps on the way.
func setRaw(obj map[string]any, v any, path ...string) {
	for _, k := range path[:len(path)-1] {
		m, ok := obj[k].(map[string]any)
		if !ok {
			m = map[string]any{}
			obj[k] = m
		}
		obj = m
	}
	obj[path[len(path)-1]] = v
}

func jwtOnly(c *chatv1alpha1.ChatCluster) {
	c.Spec.Auth.AllowAnonymous = false
	c.Spec.Auth.JWTSecretRef = &chatv1alpha1.JWTSecretKeySelector{Name: "chat-jwt"}
}

func withGossipRefs(c *chatv1alpha1.ChatCluster) {
	c.Spec.Gossip.KeyringSecretRef = &chatv1alpha1.GossipKeyringSelector{Name: "g1"}
	c.Spec.Gossip.ClusterLabel = "blue"
}

func peerTLS(duration, renew time.Duration) func(*chatv1alpha1.ChatCluster) {
	return func(c *chatv1alpha1.ChatCluster) {
		if duration > 0 {
			c.Spec.PeerTLS.CertificateDuration = dur(duration)
		}
		if renew > 0 {
			c.Spec.PeerTLS.RenewBefore = dur(renew)
		}
	}
}

func pdb(maxU, minA *intstr.IntOrString) func(*chatv1alpha1.ChatCluster) {
	return func(c *chatv1alpha1.ChatCluster) {
		c.Spec.PodDisruptionBudget = &chatv1alpha1.PodDisruptionBudgetSpec{MaxUnavailable: maxU, MinAvailable: minA}
	}
}

func socketIO(sio chatv1alpha1.SocketIOSpec) func(*chatv1alpha1.ChatCluster) {
	return func(c *chatv1alpha1.ChatCluster) { c.Spec.SocketIO = &sio }
}

func hooks(h chatv1alpha1.HooksSpec) func(*chatv1alpha1.ChatCluster) {
	return func(c *chatv1alpha1.ChatCluster) { c.Spec.Hooks = &h }
}

func limits(l chatv1alpha1.LimitsSpec) func(*chatv1alpha1.ChatCluster) {
	return func(c *chatv1alpha1.ChatCluster) { c.Spec.Limits = &l }
}

func intOrStr(s string) *intstr.IntOrString { v := intstr.Parse(s); return &v }

// storage gives the ChatCluster a volume of size (and class, when not
// empty).
func storage(size, class string) func(*chatv1alpha1.ChatCluster) {
	return func(c *chatv1alpha1.ChatCluster) {
		c.Spec.Storage = &chatv1alpha1.StorageSpec{Size: resource.MustParse(size), StorageClassName: class}
	}
}

// withReserve is storage(size, "") with a reserve.
func withReserve(size, reserve string) func(*chatv1alpha1.ChatCluster) {
	return func(c *chatv1alpha1.ChatCluster) {
		storage(size, "")(c)
		c.Spec.Storage.Reserve = ptr.To(resource.MustParse(reserve))
	}
}

// celRows: one or more refused rows per CEL rule (every branch of the rule),
// and the accepted boundary. The five refusals in celCoveredElsewhere are
// not repeated.
var celRows = []validationRow{
	// replicationFactor <= replicas unless replicas is 0 (refusal: TestInvalidSpecsAreRefused).
	{name: "replicationFactor equal to replicas", spec: func(c *chatv1alpha1.ChatCluster) { c.Spec.ReplicationFactor = 3 }},
	{name: "replicationFactor above replicas 0", spec: func(c *chatv1alpha1.ChatCluster) {
		c.Spec.Replicas, c.Spec.ReplicationFactor = ptr.To[int32](0), 5
	}},

	// drainTimeout and shutdownTimeout between 1s and 1h.
	{name: "drainTimeout below 1s", spec: func(c *chatv1alpha1.ChatCluster) { c.Spec.DrainTimeout = dur(999 * time.Millisecond) },
		field: "spec.drainTimeout", want: msgDrainTimeout},
	{name: "drainTimeout above 1h", spec: func(c *chatv1alpha1.ChatCluster) { c.Spec.DrainTimeout = dur(time.Hour + time.Second) },
		field: "spec.drainTimeout", want: msgDrainTimeout},
	{name: "drainTimeout 1s", spec: func(c *chatv1alpha1.ChatCluster) { c.Spec.DrainTimeout = dur(time.Second) }},
	{name: "drainTimeout 1h", spec: func(c *chatv1alpha1.ChatCluster) { c.Spec.DrainTimeout = dur(time.Hour) }},
	{name: "shutdownTimeout below 1s", spec: func(c *chatv1alpha1.ChatCluster) { c.Spec.ShutdownTimeout = dur(999 * time.Millisecond) },
		field: "spec.shutdownTimeout", want: msgShutdownTimeout},
	{name: "shutdownTimeout above 1h", spec: func(c *chatv1alpha1.ChatCluster) { c.Spec.ShutdownTimeout = dur(61 * time.Minute) },
		field: "spec.shutdownTimeout", want: msgShutdownTimeout},
	{name: "shutdownTimeout 1s", spec: func(c *chatv1alpha1.ChatCluster) { c.Spec.ShutdownTimeout = dur(time.Second) }},
	{name: "shutdownTimeout 1h", spec: func(c *chatv1alpha1.ChatCluster) { c.Spec.ShutdownTimeout = dur(time.Hour) }},

	// auth: one JWT ref at most, and some way to authenticate (refusals:
	// TestInvalidSpecsAreRefused).
	{name: "jwtSecretRef alone", spec: jwtOnly},
	{name: "jwtPublicKeySecretRef alone", spec: func(c *chatv1alpha1.ChatCluster) {
		c.Spec.Auth.AllowAnonymous = false
		c.Spec.Auth.JWTPublicKeySecretRef = &chatv1alpha1.JWTPublicKeySelector{Name: "chat-jwt-pub"}
	}},

	{name: "jwksSecretRef alone", spec: func(c *chatv1alpha1.ChatCluster) {
		c.Spec.Auth.AllowAnonymous = false
		c.Spec.Auth.JWKSSecretRef = &chatv1alpha1.JWKSSecretKeySelector{Name: "chat-jwks"}
	}},
	{name: "jwksSecretRef with jwtPublicKeySecretRef", spec: func(c *chatv1alpha1.ChatCluster) {
		c.Spec.Auth.JWKSSecretRef = &chatv1alpha1.JWKSSecretKeySelector{Name: "chat-jwks"}
		c.Spec.Auth.JWTPublicKeySecretRef = &chatv1alpha1.JWTPublicKeySelector{Name: "chat-jwt-pub"}
	}, field: "spec.auth", want: msgBothJWT},
	{name: "jwksSecretRef with jwtSecretRef", spec: func(c *chatv1alpha1.ChatCluster) {
		jwtOnly(c)
		c.Spec.Auth.JWKSSecretRef = &chatv1alpha1.JWKSSecretKeySelector{Name: "chat-jwks"}
	}, field: "spec.auth", want: msgBothJWT},

	// gossip: keyringSecretRef and clusterLabel are immutable
	// (clusterLabel's refusal: TestInvalidSpecsAreRefused).
	{name: "keyringSecretRef renamed", spec: withGossipRefs,
		update: func(c *chatv1alpha1.ChatCluster) { c.Spec.Gossip.KeyringSecretRef.Name = "g2" },
		field:  "spec.gossip", want: msgGossipKeyring},
	{name: "keyringSecretRef key changed", spec: withGossipRefs,
		update: func(c *chatv1alpha1.ChatCluster) { c.Spec.Gossip.KeyringSecretRef.Key = "other" },
		field:  "spec.gossip", want: msgGossipKeyring},
	{name: "keyringSecretRef added",
		update: func(c *chatv1alpha1.ChatCluster) {
			c.Spec.Gossip.KeyringSecretRef = &chatv1alpha1.GossipKeyringSelector{Name: "g1"}
		},
		field: "spec.gossip", want: msgGossipKeyring},
	{name: "keyringSecretRef removed", spec: withGossipRefs,
		update: func(c *chatv1alpha1.ChatCluster) { c.Spec.Gossip.KeyringSecretRef = nil },
		field:  "spec.gossip", want: msgGossipKeyring},
	{name: "gossip unchanged while the rest changes", spec: withGossipRefs,
		update: func(c *chatv1alpha1.ChatCluster) { c.Spec.HistorySize, c.Spec.Image = 2000, "ringchat/chatd:v2" }},
	{name: "gossip ref resent with its defaulted key", spec: withGossipRefs,
		update: func(c *chatv1alpha1.ChatCluster) {
			c.Spec.Gossip.KeyringSecretRef = &chatv1alpha1.GossipKeyringSelector{Name: "g1", Key: chatv1alpha1.DefaultGossipKeyringKey}
		}},

	// peerTLS: certificateDuration at least 1h, renewBefore at least 10m
	// and shorter than the duration.
	{name: "certificateDuration below 1h", spec: peerTLS(59*time.Minute, 0),
		field: "spec.peerTLS.certificateDuration", want: msgPeerDuration},
	{name: "certificateDuration 1h", spec: peerTLS(time.Hour, 20*time.Minute)},
	{name: "renewBefore below 10m", spec: peerTLS(0, 9*time.Minute),
		field: "spec.peerTLS.renewBefore", want: msgPeerRenewMin},
	{name: "renewBefore 10m", spec: peerTLS(0, 10*time.Minute)},
	{name: "renewBefore equal to certificateDuration", spec: peerTLS(2*time.Hour, 2*time.Hour),
		field: "spec.peerTLS.renewBefore", want: msgPeerRenewShorter},
	{name: "renewBefore just below certificateDuration", spec: peerTLS(2*time.Hour, 2*time.Hour-time.Second)},
	{name: "renewBefore above the default duration", spec: peerTLS(0, 3000*time.Hour),
		field: "spec.peerTLS.renewBefore", want: msgPeerRenewShorter},

	// service.nodePort only with NodePort or LoadBalancer.
	{name: "nodePort with ClusterIP", spec: func(c *chatv1alpha1.ChatCluster) {
		c.Spec.Service.Type, c.Spec.Service.NodePort = corev1.ServiceTypeClusterIP, ptr.To[int32](30080)
	}, field: "spec.service.nodePort", want: msgNodePort},
	{name: "nodePort with the default type", spec: func(c *chatv1alpha1.ChatCluster) { c.Spec.Service.NodePort = ptr.To[int32](30080) },
		field: "spec.service.nodePort", want: msgNodePort},
	{name: "nodePort with NodePort", spec: func(c *chatv1alpha1.ChatCluster) {
		c.Spec.Service.Type, c.Spec.Service.NodePort = corev1.ServiceTypeNodePort, ptr.To[int32](30080)
	}},
	{name: "nodePort with LoadBalancer", spec: func(c *chatv1alpha1.ChatCluster) {
		c.Spec.Service.Type, c.Spec.Service.NodePort = corev1.ServiceTypeLoadBalancer, ptr.To[int32](30080)
	}},

	// podTemplate labels and annotations leave the operator's keys alone
	// (the chat.ringchat.io/ label refusal: TestInvalidSpecsAreRefused).
	{name: "pod label app.kubernetes.io/name", spec: func(c *chatv1alpha1.ChatCluster) {
		c.Spec.PodTemplate = &chatv1alpha1.PodTemplateOverrides{Labels: map[string]string{"app.kubernetes.io/name": "mine"}}
	}, field: "spec.podTemplate.labels", want: msgPodLabels},
	{name: "pod labels of others", spec: func(c *chatv1alpha1.ChatCluster) {
		c.Spec.PodTemplate = &chatv1alpha1.PodTemplateOverrides{Labels: map[string]string{
			"app.kubernetes.io/part-of": "chat", "team": "a", "ringchat.io/tier": "front", "example.com/chat.ringchat.io": "x"}}
	}},
	{name: "pod annotation chat.ringchat.io/", spec: func(c *chatv1alpha1.ChatCluster) {
		c.Spec.PodTemplate = &chatv1alpha1.PodTemplateOverrides{Annotations: map[string]string{
			"prometheus.io/scrape": "true", chatv1alpha1.AnnotationConfigHash: "x"}}
	}, field: "spec.podTemplate.annotations", want: msgPodAnnotations},
	{name: "pod annotations of others", spec: func(c *chatv1alpha1.ChatCluster) {
		c.Spec.PodTemplate = &chatv1alpha1.PodTemplateOverrides{Annotations: map[string]string{
			"prometheus.io/scrape": "true", "app.kubernetes.io/name": "x", "ringchat.io/x": "y"}}
	}},

	// podDisruptionBudget: one of the two fields, each a non-negative number
	// or a percentage.
	{name: "PDB maxUnavailable and minAvailable", spec: pdb(intOrStr("1"), intOrStr("2")),
		field: "spec.podDisruptionBudget", want: msgPDBBoth},
	{name: "PDB maxUnavailable negative", spec: pdb(intOrStr("-1"), nil),
		field: "spec.podDisruptionBudget.maxUnavailable", want: msgMaxUnavailable},
	{name: "PDB maxUnavailable 101%", spec: pdb(intOrStr("101%"), nil),
		field: "spec.podDisruptionBudget.maxUnavailable", want: msgMaxUnavailable},
	{name: "PDB maxUnavailable a number as a string", spec: pdb(&intstr.IntOrString{Type: intstr.String, StrVal: "25"}, nil),
		field: "spec.podDisruptionBudget.maxUnavailable", want: msgMaxUnavailable},
	{name: "PDB maxUnavailable 1.5%", spec: pdb(intOrStr("1.5%"), nil),
		field: "spec.podDisruptionBudget.maxUnavailable", want: msgMaxUnavailable},
	{name: "PDB maxUnavailable 0", spec: pdb(intOrStr("0"), nil)},
	{name: "PDB maxUnavailable 0%", spec: pdb(intOrStr("0%"), nil)},
	{name: "PDB maxUnavailable 100%", spec: pdb(intOrStr("100%"), nil)},
	{name: "PDB minAvailable negative", spec: pdb(nil, intOrStr("-1")),
		field: "spec.podDisruptionBudget.minAvailable", want: msgMinAvailable},
	{name: "PDB minAvailable 101%", spec: pdb(nil, intOrStr("101%")),
		field: "spec.podDisruptionBudget.minAvailable", want: msgMinAvailable},
	{name: "PDB minAvailable 0", spec: pdb(nil, intOrStr("0"))},
	{name: "PDB minAvailable 100%", spec: pdb(nil, intOrStr("100%"))},

	// limits.rate above 0.
	{name: "rate 0", spec: limits(chatv1alpha1.LimitsSpec{Rate: "0"}), field: "spec.limits.rate", want: msgRate},
	{name: "rate 0.000", spec: limits(chatv1alpha1.LimitsSpec{Rate: "0.000"}), field: "spec.limits.rate", want: msgRate},
	{name: "rate 0.001", spec: limits(chatv1alpha1.LimitsSpec{Rate: "0.001"})},

	// socketIO: recovery window at most 24h, ping timeout between 1s and
	// 10m, namespace names as chatd takes them.
	{name: "socketIO recoveryWindow above 24h", spec: socketIO(chatv1alpha1.SocketIOSpec{RecoveryWindow: dur(24*time.Hour + time.Second)}),
		field: "spec.socketIO.recoveryWindow", want: msgRecoveryWindow},
	{name: "socketIO recoveryWindow 0s", spec: socketIO(chatv1alpha1.SocketIOSpec{RecoveryWindow: dur(0)})},
	{name: "socketIO pingTimeout below 1s", spec: socketIO(chatv1alpha1.SocketIOSpec{PingTimeout: dur(999 * time.Millisecond)}),
		field: "spec.socketIO.pingTimeout", want: msgPingTimeout},
	{name: "socketIO pingTimeout above 10m", spec: socketIO(chatv1alpha1.SocketIOSpec{PingTimeout: dur(10*time.Minute + time.Second)}),
		field: "spec.socketIO.pingTimeout", want: msgPingTimeout},
	{name: "socketIO pingTimeout 1s", spec: socketIO(chatv1alpha1.SocketIOSpec{PingTimeout: dur(time.Second)})},
	{name: "socketIO namespaces", spec: socketIO(chatv1alpha1.SocketIOSpec{Namespaces: []chatv1alpha1.SocketIONamespace{{Name: "/"}, {Name: "/staff-1_a", TokenOnly: true}}})},

	// hooks: a connect hook is a way to authenticate; timeouts between
	// 10ms and 1m, breakerOpen between 100ms and 10m, URLs http(s) only,
	// onFailure deny or allow.
	{name: "connect hook instead of JWT or anonymous", spec: func(c *chatv1alpha1.ChatCluster) {
		c.Spec.Auth.AllowAnonymous = false
		c.Spec.Hooks = &chatv1alpha1.HooksSpec{Connect: &chatv1alpha1.HookSpec{URL: "http://backend.shop.svc:8080/chat/connect"}}
	}},
	{name: "join hook alone is no way to authenticate", spec: func(c *chatv1alpha1.ChatCluster) {
		c.Spec.Auth.AllowAnonymous = false
		c.Spec.Hooks = &chatv1alpha1.HooksSpec{Join: &chatv1alpha1.HookSpec{URL: "http://backend:8080/join"}}
	}, field: "spec.auth", want: msgNoAuth},
	{name: "hook timeout below 10ms", spec: hooks(chatv1alpha1.HooksSpec{Send: &chatv1alpha1.HookSpec{URL: "https://b:1/send", Timeout: dur(9 * time.Millisecond)}}),
		field: "spec.hooks.send.timeout", want: msgHookTimeout},
	{name: "hook timeout above 1m", spec: hooks(chatv1alpha1.HooksSpec{Join: &chatv1alpha1.HookSpec{URL: "https://b:1/join", Timeout: dur(time.Minute + time.Second)}}),
		field: "spec.hooks.join.timeout", want: msgHookTimeout},
	{name: "hook timeout 10ms", spec: hooks(chatv1alpha1.HooksSpec{Join: &chatv1alpha1.HookSpec{URL: "https://b:1/join", Timeout: dur(10 * time.Millisecond)}})},
	{name: "breakerOpen below 100ms", spec: hooks(chatv1alpha1.HooksSpec{BreakerOpen: dur(99 * time.Millisecond)}),
		field: "spec.hooks.breakerOpen", want: msgBreakerOpen},
	{name: "breakerOpen 10m", spec: hooks(chatv1alpha1.HooksSpec{BreakerOpen: dur(10 * time.Minute)})},
	{name: "event stream timeout above 1m", spec: hooks(chatv1alpha1.HooksSpec{EventStream: &chatv1alpha1.EventStreamSpec{URL: "http://indexer/events", Timeout: dur(2 * time.Minute)}}),
		field: "spec.hooks.eventStream.timeout", want: msgHookTimeout},
	{name: "event stream", spec: hooks(chatv1alpha1.HooksSpec{EventStream: &chatv1alpha1.EventStreamSpec{URL: "https://indexer.shop.svc/events", Timeout: dur(time.Second), BatchSize: ptr.To[int32](10000)}})},

	// metadata.name: at most 52 characters, a DNS label starting with a
	// letter. The rule is on the root object, which the API server's cause
	// names "<nil>".
	{name: "name of 53 characters", spec: func(c *chatv1alpha1.ChatCluster) { c.Name = "c" + strings.Repeat("a", 52) },
		field: "<nil>", want: msgName},
	{name: "name starting with a digit", spec: func(c *chatv1alpha1.ChatCluster) { c.Name = "1chat" },
		field: "<nil>", want: msgName},
	{name: "name with a dot", spec: func(c *chatv1alpha1.ChatCluster) { c.Name = "chat.lobby" },
		field: "<nil>", want: msgName},
	{name: "name of 52 characters", spec: func(c *chatv1alpha1.ChatCluster) { c.Name = "c" + strings.Repeat("a", 51) }},

	// storage: neither added to nor removed from an existing cluster.
	{name: "storage added", update: storage("1Gi", ""), field: "spec.storage", want: msgStorageAddRemove},
	{name: "storage removed", spec: storage("1Gi", ""),
		update: func(c *chatv1alpha1.ChatCluster) { c.Spec.Storage = nil }, field: "spec.storage", want: msgStorageAddRemove},
	{name: "storage kept while the rest changes", spec: storage("1Gi", "fast"),
		update: func(c *chatv1alpha1.ChatCluster) {
			c.Spec.HistorySize = 2000
			c.Spec.Storage.Retention.MaxMessages = ptr.To[int64](100)
		}},
	{name: "no storage while the rest changes", update: func(c *chatv1alpha1.ChatCluster) { c.Spec.HistorySize = 2000 }},

	// storage.size never shrinks; it may grow or be written another way.
	{name: "storage size shrunk", spec: storage("2Gi", ""),
		update: func(c *chatv1alpha1.ChatCluster) { c.Spec.Storage.Size = resource.MustParse("2047Mi") },
		field:  "spec.storage.size", want: msgStorageShrink},
	{name: "storage size grown", spec: storage("2Gi", ""),
		update: func(c *chatv1alpha1.ChatCluster) { c.Spec.Storage.Size = resource.MustParse("2049Mi") }},
	{name: "storage size rewritten equal", spec: storage("2Gi", ""),
		update: func(c *chatv1alpha1.ChatCluster) { c.Spec.Storage.Size = resource.MustParse("2048Mi") }},

	// storage.storageClassName is immutable, set or left out.
	{name: "storageClassName changed", spec: storage("1Gi", "fast"),
		update: func(c *chatv1alpha1.ChatCluster) { c.Spec.Storage.StorageClassName = "slow" },
		field:  "spec.storage.storageClassName", want: msgStorageClass},
	{name: "storageClassName added", spec: storage("1Gi", ""),
		update: func(c *chatv1alpha1.ChatCluster) { c.Spec.Storage.StorageClassName = "fast" },
		field:  "spec.storage.storageClassName", want: msgStorageClass},
	{name: "storageClassName removed", spec: storage("1Gi", "fast"),
		update: func(c *chatv1alpha1.ChatCluster) { c.Spec.Storage.StorageClassName = "" },
		field:  "spec.storage.storageClassName", want: msgStorageClass},

	// storage.reserve below storage.size.
	{name: "storage reserve equal to size", spec: withReserve("1Gi", "1024Mi"),
		field: "spec.storage.reserve", want: msgStorageReserve},
	{name: "storage reserve above size", spec: withReserve("1Gi", "2Gi"),
		field: "spec.storage.reserve", want: msgStorageReserve},
	{name: "storage reserve just below size", spec: withReserve("1Gi", "1073741823")},
	{name: "storage reserve 0", spec: withReserve("64Mi", "0")},

	// storage.size at least 64Mi.
	{name: "storage size below 64Mi", spec: storage("67108863", ""), field: "spec.storage.size", want: msgStorageMinSize},
	{name: "storage size negative", spec: storage("-1Gi", ""), field: "spec.storage.size", want: msgStorageMinSize},
	{name: "storage size 64Mi", spec: storage("64Mi", "")},
	{name: "storage size written in decimal units", spec: storage("68M", "")},
}

// schemaRows: the OpenAPI rules (markers other than XValidation).
var schemaRows = []validationRow{
	// hooks: URLs http(s) with a host, onFailure deny or allow, retries
	// at most 5.
	{name: "hook URL not http", spec: hooks(chatv1alpha1.HooksSpec{Join: &chatv1alpha1.HookSpec{URL: "ftp://backend/join"}}),
		field: "spec.hooks.join.url", want: "should match"},
	{name: "hook URL without host", spec: hooks(chatv1alpha1.HooksSpec{Join: &chatv1alpha1.HookSpec{URL: "https:///join"}}),
		field: "spec.hooks.join.url", want: "should match"},
	{name: "hook onFailure other", spec: hooks(chatv1alpha1.HooksSpec{Send: &chatv1alpha1.HookSpec{URL: "http://b/s", OnFailure: "retry"}}),
		field: "spec.hooks.send.onFailure", want: "Unsupported value"},
	{name: "hook retries 6", spec: hooks(chatv1alpha1.HooksSpec{Retries: ptr.To[int32](6)}),
		field: "spec.hooks.retries", want: maximum(5)},
	{name: "event stream URL not http", spec: hooks(chatv1alpha1.HooksSpec{EventStream: &chatv1alpha1.EventStreamSpec{URL: "kafka://broker/events"}}),
		field: "spec.hooks.eventStream.url", want: "should match"},
	{name: "event stream batch 0", spec: hooks(chatv1alpha1.HooksSpec{EventStream: &chatv1alpha1.EventStreamSpec{URL: "http://indexer/events", BatchSize: ptr.To[int32](0)}}),
		field: "spec.hooks.eventStream.batchSize", want: minimum(1)},
	// socketIO namespace names as chatd takes them, each once.
	{name: "socketIO namespace without its slash", spec: socketIO(chatv1alpha1.SocketIOSpec{Namespaces: []chatv1alpha1.SocketIONamespace{{Name: "support"}}}),
		field: "spec.socketIO.namespaces[0].name", want: "should match"},
	{name: "socketIO namespace of 25 characters", spec: socketIO(chatv1alpha1.SocketIOSpec{Namespaces: []chatv1alpha1.SocketIONamespace{{Name: "/" + strings.Repeat("a", 24)}}}),
		field: "spec.socketIO.namespaces[0].name", want: "may not be more than 24 bytes"},
	{name: "socketIO namespace listed twice", spec: socketIO(chatv1alpha1.SocketIOSpec{Namespaces: []chatv1alpha1.SocketIONamespace{{Name: "/a"}, {Name: "/a", TokenOnly: true}}}),
		field: "spec.socketIO.namespaces[1]", want: "Duplicate value"},
	{name: "replicas -1", spec: func(c *chatv1alpha1.ChatCluster) { c.Spec.Replicas = ptr.To[int32](-1) },
		field: "spec.replicas", want: minimum(0)},
	{name: "replicas 101", spec: func(c *chatv1alpha1.ChatCluster) { c.Spec.Replicas = ptr.To[int32](101) },
		field: "spec.replicas", want: maximum(100)},
	{name: "replicas 100", spec: func(c *chatv1alpha1.ChatCluster) { c.Spec.Replicas = ptr.To[int32](100) }},
	{name: "replicas 0", spec: func(c *chatv1alpha1.ChatCluster) { c.Spec.Replicas = ptr.To[int32](0) }},

	{name: "image empty", raw: func(o map[string]any) { setRaw(o, "", "spec", "image") },
		field: "spec.image", want: minLen1},
	{name: "imagePullPolicy Sometimes", spec: func(c *chatv1alpha1.ChatCluster) { c.Spec.ImagePullPolicy = "Sometimes" },
		field: "spec.imagePullPolicy", want: `supported values: "Always", "Never", "IfNotPresent"`},
	{name: "imagePullPolicy Never", spec: func(c *chatv1alpha1.ChatCluster) { c.Spec.ImagePullPolicy = corev1.PullNever }},

	{name: "historySize 9", spec: func(c *chatv1alpha1.ChatCluster) { c.Spec.HistorySize = 9 },
		field: "spec.historySize", want: minimum(10)},
	{name: "historySize 100001", spec: func(c *chatv1alpha1.ChatCluster) { c.Spec.HistorySize = 100001 },
		field: "spec.historySize", want: maximum(100000)},
	{name: "historySize 10", spec: func(c *chatv1alpha1.ChatCluster) { c.Spec.HistorySize = 10 }},
	{name: "historySize 100000", spec: func(c *chatv1alpha1.ChatCluster) { c.Spec.HistorySize = 100000 }},

	{name: "replicationFactor 0", raw: func(o map[string]any) { setRaw(o, int64(0), "spec", "replicationFactor") },
		field: "spec.replicationFactor", want: minimum(1)},
	{name: "replicationFactor 6", spec: func(c *chatv1alpha1.ChatCluster) { c.Spec.Replicas, c.Spec.ReplicationFactor = ptr.To[int32](10), 6 },
		field: "spec.replicationFactor", want: maximum(5)},
	{name: "replicationFactor 1", spec: func(c *chatv1alpha1.ChatCluster) { c.Spec.ReplicationFactor = 1 }},
	{name: "replicationFactor 5", spec: func(c *chatv1alpha1.ChatCluster) { c.Spec.Replicas, c.Spec.ReplicationFactor = ptr.To[int32](5), 5 }},

	// A value the pattern refuses gets the pattern's message only: the CEL
	// rules on the same field are guarded by the pattern, so they add no
	// "type conversion error".
	{name: "drainTimeout not a duration", raw: func(o map[string]any) { setRaw(o, "soon", "spec", "drainTimeout") },
		field: "spec.drainTimeout", want: durationRE, absent: typeConversion},
	{name: "drainTimeout of 33 characters", raw: func(o map[string]any) {
		setRaw(o, strings.Repeat("0", 30)+"10s", "spec", "drainTimeout")
	}, field: "spec.drainTimeout", want: maxLen(32)},
	{name: "shutdownTimeout with a space", raw: func(o map[string]any) { setRaw(o, "10 s", "spec", "shutdownTimeout") },
		field: "spec.shutdownTimeout", want: durationRE, absent: typeConversion},
	{name: "shutdownTimeout in several units", raw: func(o map[string]any) { setRaw(o, "1m30.5s", "spec", "shutdownTimeout") }},

	{name: "jwtSecretRef name with capitals", spec: func(c *chatv1alpha1.ChatCluster) {
		c.Spec.Auth.JWTSecretRef = &chatv1alpha1.JWTSecretKeySelector{Name: "Chat_JWT"}
		c.Spec.Auth.AllowAnonymous = false
	}, field: "spec.auth.jwtSecretRef.name", want: nameRE},
	{name: "jwtSecretRef name empty", raw: func(o map[string]any) {
		setRaw(o, map[string]any{"name": ""}, "spec", "auth", "jwtSecretRef")
	}, field: "spec.auth.jwtSecretRef.name", want: minLen1},
	{name: "jwtSecretRef key with a slash", spec: func(c *chatv1alpha1.ChatCluster) {
		c.Spec.Auth.JWTSecretRef = &chatv1alpha1.JWTSecretKeySelector{Name: "chat-jwt", Key: "a/b"}
		c.Spec.Auth.AllowAnonymous = false
	}, field: "spec.auth.jwtSecretRef.key", want: keyRE},
	{name: "jwtSecretRef key ..", spec: func(c *chatv1alpha1.ChatCluster) {
		c.Spec.Auth.JWTSecretRef = &chatv1alpha1.JWTSecretKeySelector{Name: "chat.jwt", Key: ".."}
		c.Spec.Auth.AllowAnonymous = false
	}},
	{name: "jwtPublicKeySecretRef name of 254 characters", spec: func(c *chatv1alpha1.ChatCluster) {
		c.Spec.Auth.JWTPublicKeySecretRef = &chatv1alpha1.JWTPublicKeySelector{Name: strings.Repeat("a", 254)}
		c.Spec.Auth.AllowAnonymous = false
	}, field: "spec.auth.jwtPublicKeySecretRef.name", want: maxLen(253)},
	{name: "jwtPublicKeySecretRef name of 253 characters", spec: func(c *chatv1alpha1.ChatCluster) {
		c.Spec.Auth.JWTPublicKeySecretRef = &chatv1alpha1.JWTPublicKeySelector{Name: strings.Repeat("a", 253)}
		c.Spec.Auth.AllowAnonymous = false
	}},
	{name: "issuer of 1025 characters", spec: func(c *chatv1alpha1.ChatCluster) { c.Spec.Auth.Issuer = strings.Repeat("i", 1025) },
		field: "spec.auth.issuer", want: maxLen(1024)},
	{name: "audience of 1025 characters", spec: func(c *chatv1alpha1.ChatCluster) { c.Spec.Auth.Audience = strings.Repeat("a", 1025) },
		field: "spec.auth.audience", want: maxLen(1024)},
	{name: "issuer of 1024 characters", spec: func(c *chatv1alpha1.ChatCluster) { c.Spec.Auth.Issuer = strings.Repeat("i", 1024) }},
	{name: "auth left out", raw: func(o map[string]any) { delete(o["spec"].(map[string]any), "auth") },
		field: "spec.auth", want: "Required value"},

	{name: "gossip keyring name starting with -", spec: func(c *chatv1alpha1.ChatCluster) {
		c.Spec.Gossip.KeyringSecretRef = &chatv1alpha1.GossipKeyringSelector{Name: "-g"}
	}, field: "spec.gossip.keyringSecretRef.name", want: nameRE},
	{name: "gossip keyring key with a space", spec: func(c *chatv1alpha1.ChatCluster) {
		c.Spec.Gossip.KeyringSecretRef = &chatv1alpha1.GossipKeyringSelector{Name: "c", Key: "a b"}
	}, field: "spec.gossip.keyringSecretRef.key", want: keyRE},
	{name: "JWKS key with a space", spec: func(c *chatv1alpha1.ChatCluster) {
		c.Spec.Auth.JWKSSecretRef = &chatv1alpha1.JWKSSecretKeySelector{Name: "c", Key: "a b"}
	}, field: "spec.auth.jwksSecretRef.key", want: keyRE},
	{name: "33 clientFrom peers", spec: func(c *chatv1alpha1.ChatCluster) {
		for range 33 {
			c.Spec.NetworkPolicy.ClientFrom = append(c.Spec.NetworkPolicy.ClientFrom, networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8"}})
		}
	}, field: "spec.networkPolicy.clientFrom", want: "must have at most 32 items"},
	{name: "clusterLabel starting with -", spec: func(c *chatv1alpha1.ChatCluster) { c.Spec.Gossip.ClusterLabel = "-blue" },
		field: "spec.gossip.clusterLabel", want: `should match '^([a-zA-Z0-9]([-a-zA-Z0-9_./]*[a-zA-Z0-9])?)?$'`},
	{name: "clusterLabel of 65 characters", spec: func(c *chatv1alpha1.ChatCluster) { c.Spec.Gossip.ClusterLabel = strings.Repeat("b", 65) },
		field: "spec.gossip.clusterLabel", want: maxLen(64)},
	{name: "clusterLabel of 64 characters with every allowed sign", spec: func(c *chatv1alpha1.ChatCluster) {
		c.Spec.Gossip.ClusterLabel = "Team/chat_1.a-" + strings.Repeat("b", 50)
	}},

	{name: "service type ExternalName", spec: func(c *chatv1alpha1.ChatCluster) { c.Spec.Service.Type = corev1.ServiceTypeExternalName },
		field: "spec.service.type", want: `supported values: "ClusterIP", "NodePort", "LoadBalancer"`},
	{name: "service port 0", raw: func(o map[string]any) { setRaw(o, int64(0), "spec", "service", "port") },
		field: "spec.service.port", want: minimum(1)},
	{name: "service port 65536", spec: func(c *chatv1alpha1.ChatCluster) { c.Spec.Service.Port = 65536 },
		field: "spec.service.port", want: maximum(65535)},
	{name: "service port 65535", spec: func(c *chatv1alpha1.ChatCluster) { c.Spec.Service.Port = 65535 }},
	{name: "nodePort 0", spec: func(c *chatv1alpha1.ChatCluster) {
		c.Spec.Service.Type, c.Spec.Service.NodePort = corev1.ServiceTypeNodePort, ptr.To[int32](0)
	}, field: "spec.service.nodePort", want: minimum(1)},
	{name: "nodePort 65536", spec: func(c *chatv1alpha1.ChatCluster) {
		c.Spec.Service.Type, c.Spec.Service.NodePort = corev1.ServiceTypeNodePort, ptr.To[int32](65536)
	}, field: "spec.service.nodePort", want: maximum(65535)},

	{name: "tls secretName with capitals", spec: func(c *chatv1alpha1.ChatCluster) { c.Spec.TLS = &chatv1alpha1.TLSSpec{SecretName: "Chat-TLS"} },
		field: "spec.tls.secretName", want: nameRE},
	{name: "tls secretName empty", raw: func(o map[string]any) { setRaw(o, map[string]any{"secretName": ""}, "spec", "tls") },
		field: "spec.tls.secretName", want: minLen1},

	{name: "priorityClassName of 254 characters", spec: func(c *chatv1alpha1.ChatCluster) {
		c.Spec.PodTemplate = &chatv1alpha1.PodTemplateOverrides{PriorityClassName: strings.Repeat("p", 254)}
	}, field: "spec.podTemplate.priorityClassName", want: maxLen(253)},
	{name: "env with a name twice", spec: func(c *chatv1alpha1.ChatCluster) {
		c.Spec.PodTemplate = &chatv1alpha1.PodTemplateOverrides{Env: []corev1.EnvVar{
			{Name: "CHATD_LOG_LEVEL", Value: "debug"}, {Name: "CHATD_LOG_LEVEL", Value: "info"}}}
	}, field: "spec.podTemplate.env[1]", want: "Duplicate value"},

	{name: "maxConnections -1", spec: limits(chatv1alpha1.LimitsSpec{MaxConnections: ptr.To[int32](-1)}),
		field: "spec.limits.maxConnections", want: minimum(0)},
	{name: "maxConnectionsPerIP -1", spec: limits(chatv1alpha1.LimitsSpec{MaxConnectionsPerIP: ptr.To[int32](-1)}),
		field: "spec.limits.maxConnectionsPerIP", want: minimum(0)},
	{name: "connection limits 0", spec: limits(chatv1alpha1.LimitsSpec{MaxConnections: ptr.To[int32](0), MaxConnectionsPerIP: ptr.To[int32](0)})},
	{name: "maxTextBytes 0", spec: limits(chatv1alpha1.LimitsSpec{MaxTextBytes: ptr.To[int32](0)}),
		field: "spec.limits.maxTextBytes", want: minimum(1)},
	{name: "maxTextBytes 65537", spec: limits(chatv1alpha1.LimitsSpec{MaxTextBytes: ptr.To[int32](65537)}),
		field: "spec.limits.maxTextBytes", want: maximum(65536)},
	{name: "maxTextBytes 1 and rateBurst 1", spec: limits(chatv1alpha1.LimitsSpec{MaxTextBytes: ptr.To[int32](1), RateBurst: ptr.To[int32](1)})},
	{name: "maxTextBytes 65536", spec: limits(chatv1alpha1.LimitsSpec{MaxTextBytes: ptr.To[int32](65536)})},
	{name: "rateBurst 0", spec: limits(chatv1alpha1.LimitsSpec{RateBurst: ptr.To[int32](0)}),
		field: "spec.limits.rateBurst", want: minimum(1)},
	{name: "rate not a number", spec: limits(chatv1alpha1.LimitsSpec{Rate: "fast"}),
		field: "spec.limits.rate", want: `should match '^[0-9]+(\.[0-9]+)?$'`, absent: typeConversion},
	{name: "rate of 17 characters", spec: limits(chatv1alpha1.LimitsSpec{Rate: "1." + strings.Repeat("0", 15)}),
		field: "spec.limits.rate", want: maxLen(16)},
	{name: "rate of 16 characters", spec: limits(chatv1alpha1.LimitsSpec{Rate: "1." + strings.Repeat("0", 14)})},

	{name: "storage without size", raw: func(o map[string]any) { setRaw(o, map[string]any{}, "spec", "storage") },
		field: "spec.storage.size", want: "Required value"},
	{name: "storage size not a quantity", raw: func(o map[string]any) { setRaw(o, "lots", "spec", "storage", "size") },
		field: "spec.storage.size", want: "should match", absent: typeConversion},
	{name: "storage reserve not a quantity", spec: storage("1Gi", ""),
		raw:   func(o map[string]any) { setRaw(o, "1 Gi", "spec", "storage", "reserve") },
		field: "spec.storage.reserve", want: "should match", absent: typeConversion},
	{name: "storageClassName with capitals", spec: storage("1Gi", "Fast"),
		field: "spec.storage.storageClassName", want: nameRE},
	{name: "storageClassName empty", spec: storage("1Gi", ""),
		raw:   func(o map[string]any) { setRaw(o, "", "spec", "storage", "storageClassName") },
		field: "spec.storage.storageClassName", want: nameRE},
	{name: "storageClassName of 254 characters", spec: storage("1Gi", strings.Repeat("s", 254)),
		field: "spec.storage.storageClassName", want: maxLen(253)},
	{name: "storageClassName of 253 characters", spec: storage("1Gi", strings.Repeat("s", 253))},
	{name: "retention maxAge not a duration", spec: storage("1Gi", ""),
		raw:   func(o map[string]any) { setRaw(o, "a month", "spec", "storage", "retention", "maxAge") },
		field: "spec.storage.retention.maxAge", want: durationRE},
	{name: "retention maxAge 0s and maxMessages 0", spec: func(c *chatv1alpha1.ChatCluster) {
		storage("1Gi", "")(c)
		c.Spec.Storage.Retention = chatv1alpha1.RetentionSpec{MaxAge: dur(0), MaxMessages: ptr.To[int64](0)}
	}},
	{name: "retention maxMessages -1", spec: func(c *chatv1alpha1.ChatCluster) {
		storage("1Gi", "")(c)
		c.Spec.Storage.Retention.MaxMessages = ptr.To[int64](-1)
	}, field: "spec.storage.retention.maxMessages", want: minimum(0)},
}

// TestValidationRules sends each row to the API server.
func TestValidationRules(t *testing.T) {
	s := envSuite(t)
	ns := s.namespace(t)
	ctx := context.Background()
	for i, row := range slices.Concat(celRows, schemaRows) {
		t.Run(row.name, func(t *testing.T) {
			cc := sample(t, ns)
			cc.Name = fmt.Sprintf("v%d", i)
			if row.spec != nil {
				row.spec(cc)
			}
			var err error
			if row.update == nil {
				m, cerr := runtime.DefaultUnstructuredConverter.ToUnstructured(cc)
				if cerr != nil {
					t.Fatal(cerr)
				}
				if row.raw != nil {
					row.raw(m)
				}
				err = s.admin.Create(ctx, &unstructured.Unstructured{Object: m}, client.DryRunAll)
			} else {
				if row.raw != nil {
					t.Fatal("an update row cannot have raw changes")
				}
				// Paused: the operator leaves the object alone (no children).
				cc.Annotations = map[string]string{chatv1alpha1.AnnotationPauseReconcile: "true"}
				if err := s.admin.Create(ctx, cc); err != nil {
					t.Fatalf("creating the object to update: %v", err)
				}
				err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
					if err := s.get(cc); err != nil {
						return err
					}
					row.update(cc)
					return s.admin.Update(ctx, cc, client.DryRunAll)
				})
			}
			checkValidation(t, err, row.field, row.want)
			if row.absent != "" {
				checkAbsent(t, err, row.absent)
			}
		})
	}
}

// checkValidation: want empty, err must be nil; otherwise err must be
// Invalid with a cause on field whose message contains want.
func checkValidation(t *testing.T, err error, field, want string) {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Errorf("refused: %v", err)
		}
		return
	}
	if err == nil {
		t.Errorf("accepted, want %s refused with %q", field, want)
		return
	}
	var status apierrors.APIStatus
	if !apierrors.IsInvalid(err) || !errors.As(err, &status) || status.Status().Details == nil {
		t.Errorf("error %v, want Invalid with %s: %q", err, field, want)
		return
	}
	var causes []string
	for _, c := range status.Status().Details.Causes {
		if c.Field == field && strings.Contains(c.Message, want) {
			return
		}
		causes = append(causes, fmt.Sprintf("%s: %s", c.Field, c.Message))
	}
	t.Errorf("no cause on %s with %q; causes:\n  %s", field, want, strings.Join(causes, "\n  "))
}

// checkAbsent fails when err mentions absent, in any cause or its text.
func checkAbsent(t *testing.T, err error, absent string) {
	t.Helper()
	if err == nil {
		return
	}
	if strings.Contains(err.Error(), absent) {
		t.Errorf("error mentions %q: %v", absent, err)
		return
	}
	var status apierrors.APIStatus
	if errors.As(err, &status) && status.Status().Details != nil {
		for _, c := range status.Status().Details.Causes {
			if strings.Contains(c.Message, absent) {
				t.Errorf("cause on %s mentions %q: %s", c.Field, absent, c.Message)
			}
		}
	}
}

// TestEveryCELRuleHasARow reads the CRD and checks that each of its
// x-kubernetes-validations rules is refused by a row above or by
// TestInvalidSpecsAreRefused, and that each row's CEL message is one of
// the CRD's: a new rule without a test, or a reworded message, fails here.
func TestEveryCELRuleHasARow(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot, "config", "crd", "bases", "chat.ringchat.io_chatclusters.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var crd map[string]any
	if err := yaml.Unmarshal(b, &crd); err != nil {
		t.Fatal(err)
	}
	var messages []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if rules, ok := v["x-kubernetes-validations"].([]any); ok {
				for _, r := range rules {
					msg, _ := r.(map[string]any)["message"].(string)
					messages = append(messages, msg)
				}
			}
			for _, sub := range v {
				walk(sub)
			}
		case []any:
			for _, sub := range v {
				walk(sub)
			}
		}
	}
	walk(crd)
	if len(messages) < 21 {
		t.Fatalf("found %d CEL rules in the CRD, want at least 21: %q", len(messages), messages)
	}

	refused := map[string]bool{}
	for _, row := range celRows {
		if row.want != "" {
			refused[row.want] = true
		}
	}
	old, err := os.ReadFile("chatcluster_controller_test.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, msg := range messages {
		if refused[msg] {
			continue
		}
		if text, ok := celCoveredElsewhere[msg]; ok {
			if !strings.Contains(string(old), fmt.Sprintf("%q", text)) {
				t.Errorf("CEL rule %q: celCoveredElsewhere says TestInvalidSpecsAreRefused checks it, but chatcluster_controller_test.go no longer has %q; add a row here", msg, text)
			}
			continue
		}
		t.Errorf("CEL rule %q has no row in celRows that it refuses", msg)
	}
	for m := range refused {
		if !slices.Contains(messages, m) {
			t.Errorf("a row expects %q, which is no CEL rule's message in the CRD", m)
		}
	}
	for m := range celCoveredElsewhere {
		if !slices.Contains(messages, m) {
			t.Errorf("celCoveredElsewhere lists %q, which is no CEL rule's message in the CRD", m)
		}
	}
}
