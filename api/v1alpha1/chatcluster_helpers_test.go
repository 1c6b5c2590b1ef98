package v1alpha1

import (
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// clusterLabelPattern is the +kubebuilder:validation:Pattern of
// spec.gossip.clusterLabel; a derived label must satisfy it too.
var clusterLabelPattern = regexp.MustCompile(`^([a-zA-Z0-9]([-a-zA-Z0-9_./]*[a-zA-Z0-9])?)?$`)

func newCluster(ns, name string) *ChatCluster {
	return &ChatCluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
}

func TestDefaultsForAnEmptySpec(t *testing.T) {
	c := newCluster("chat", "prod")
	checks := []struct {
		name      string
		got, want any
	}{
		{"DesiredReplicas", c.DesiredReplicas(), int32(3)},
		{"ImageOrDefault", c.ImageOrDefault(), "ringchat/chatd:dev"},
		{"ImagePullPolicyOrDefault", c.ImagePullPolicyOrDefault(), corev1.PullIfNotPresent},
		{"HistorySize", c.HistorySize(), int32(1000)},
		{"ReplicationFactor", c.ReplicationFactor(), int32(2)},
		{"SendQueue", c.SendQueue(), int32(4096)},
		{"DrainTimeout", c.DrainTimeout(), 25 * time.Second},
		{"ShutdownTimeout", c.ShutdownTimeout(), 20 * time.Second},
		{"TerminationGracePeriodSeconds", c.TerminationGracePeriodSeconds(), int64(60)}, // 5 s preStop + 25 s drain + 20 s shutdown + 10 s
		{"ExpectedNodes", c.ExpectedNodes(), int32(3)},
		{"ServiceName", c.ServiceName(), "prod"},
		{"HeadlessServiceName", c.HeadlessServiceName(), "prod-headless"},
		{"GossipKeyringSecretName", c.GossipKeyringSecretName(), "prod-gossip-keyring"},
		{"NeedsGeneratedGossipKeyring", c.NeedsGeneratedGossipKeyring(), true},
		{"PeerCASecretName", c.PeerCASecretName(), "prod-peer-ca"},
		{"PeerTLSSecretName", c.PeerTLSSecretName(), "prod-peer-tls"},
		{"AdminSecretName", c.AdminSecretName(), "prod-admin"},
		{"MetricsServiceName", c.MetricsServiceName(), "prod-metrics"},
		{"NetworkPolicyName", c.NetworkPolicyName(), "prod-chatd"},
		{"PodName", c.PodName(2), "prod-2"},
		{"NetworkPolicyEnabled", c.NetworkPolicyEnabled(), true},
		{"PeerCertificateDuration", c.PeerCertificateDuration(), 90 * 24 * time.Hour},
		{"PeerRenewBefore", c.PeerRenewBefore(), 30 * 24 * time.Hour},
		{"ClusterLabel", c.ClusterLabel(), "chat/prod"},
		{"SelectorString", c.SelectorString(), "app.kubernetes.io/name=chatd,chat.ringchat.io/cluster=prod"},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s() = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
}

func TestSetValuesWin(t *testing.T) {
	c := newCluster("chat", "prod")
	c.Spec = ChatClusterSpec{
		Replicas:          ptr.To[int32](0),
		Image:             "registry.example/chatd:1.2.3",
		ImagePullPolicy:   corev1.PullAlways,
		HistorySize:       10000,
		ReplicationFactor: 3,
		DrainTimeout:      &metav1.Duration{Duration: 90 * time.Second},
		ShutdownTimeout:   &metav1.Duration{Duration: 1500 * time.Millisecond},
	}
	if got := c.DesiredReplicas(); got != 0 {
		t.Errorf("DesiredReplicas() = %d, want 0 (an explicit 0 is not the default)", got)
	}
	if got := c.ImageOrDefault(); got != "registry.example/chatd:1.2.3" {
		t.Errorf("ImageOrDefault() = %q", got)
	}
	if got := c.ImagePullPolicyOrDefault(); got != corev1.PullAlways {
		t.Errorf("ImagePullPolicyOrDefault() = %q", got)
	}
	if got := c.HistorySize(); got != 10000 {
		t.Errorf("HistorySize() = %d", got)
	}
	if got := c.SendQueue(); got != 10016 {
		t.Errorf("SendQueue() = %d, want history + 16 = 10016", got)
	}
	if got := c.ReplicationFactor(); got != 3 {
		t.Errorf("ReplicationFactor() = %d", got)
	}
	// 90 s + 1.5 s + 10 s = 101.5 s, rounded up.
	if got := c.TerminationGracePeriodSeconds(); got != 107 {
		t.Errorf("TerminationGracePeriodSeconds() = %d, want 107", got)
	}
}

func TestSendQueueCoversHistory(t *testing.T) {
	for _, h := range []int32{10, 1000, 4080, 4081, 100000} {
		c := newCluster("ns", "c")
		c.Spec.HistorySize = h
		if q := c.SendQueue(); q < h+16 || q < 4096 {
			t.Errorf("historySize %d: SendQueue() = %d, want >= max(4096, %d)", h, q, h+16)
		}
	}
}

func TestClusterLabel(t *testing.T) {
	long := strings.Repeat("n", 63)
	tests := []struct {
		name, ns, cr, set, want string
	}{
		{name: "explicit label wins", ns: "chat", cr: "prod", set: "my-cluster", want: "my-cluster"},
		{name: "derived", ns: "chat", cr: "prod", want: "chat/prod"},
		{name: "no namespace", ns: "", cr: "prod", want: "prod"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(tt.ns, tt.cr)
			c.Spec.Gossip.ClusterLabel = tt.set
			if got := c.ClusterLabel(); got != tt.want {
				t.Errorf("ClusterLabel() = %q, want %q", got, tt.want)
			}
		})
	}

	// Too long: shortened, valid, deterministic, and still distinct.
	a := newCluster(long, strings.Repeat("a", 52)).ClusterLabel()
	b := newCluster(long, strings.Repeat("a", 51)+"b").ClusterLabel()
	if len(a) > MaxClusterLabelLength || !clusterLabelPattern.MatchString(a) {
		t.Errorf("long label %q (%d bytes) is not a valid clusterLabel", a, len(a))
	}
	if a != newCluster(long, strings.Repeat("a", 52)).ClusterLabel() {
		t.Error("derived label is not deterministic")
	}
	if a == b {
		t.Errorf("two clusters that differ only past the cut share the label %q", a)
	}
	if !strings.HasPrefix(a, long[:40]) {
		t.Errorf("long label %q lost its readable prefix", a)
	}
}

func TestSanitizeLabel(t *testing.T) {
	for in, want := range map[string]string{
		"ns/name":      "ns/name",
		"ns/na me":     "ns/na-me",
		"-ns/name-":    "ns/name",
		"ns/ünïcode":   "ns/--n--code",
		"///":          "ringchat",
		"A.b_c-d/e":    "A.b_c-d/e",
		"":             "ringchat",
		"x/" + "é":     "x",
		"ok/name.with": "ok/name.with",
	} {
		got := sanitizeLabel(in)
		if got != want {
			t.Errorf("sanitizeLabel(%q) = %q, want %q", in, got, want)
		}
		if !clusterLabelPattern.MatchString(got) || len(got) > MaxClusterLabelLength {
			t.Errorf("sanitizeLabel(%q) = %q does not match the clusterLabel pattern", in, got)
		}
	}
}

func TestSecretRefs(t *testing.T) {
	c := newCluster("chat", "prod")
	if got, want := c.EffectiveGossipKeyringRef(), secretKey("prod-gossip-keyring", "keyring"); got != want {
		t.Errorf("generated gossip keyring ref = %+v, want %+v", got, want)
	}
	c.Spec.Gossip.KeyringSecretRef = &GossipKeyringSelector{Name: "mine"}
	if c.NeedsGeneratedGossipKeyring() {
		t.Error("the user names a keyring: no generated Secret is needed")
	}
	if got, want := c.EffectiveGossipKeyringRef(), secretKey("mine", "keyring"); got != want {
		t.Errorf("user gossip keyring ref = %+v, want %+v (default key)", got, want)
	}
	c.Spec.Gossip.KeyringSecretRef.Key = "ring"
	if got, want := c.EffectiveGossipKeyringRef(), secretKey("mine", "ring"); got != want {
		t.Errorf("user gossip keyring ref = %+v, want %+v", got, want)
	}
	if got, want := (&JWKSSecretKeySelector{Name: "keys"}).Selector(), secretKey("keys", "jwks.json"); got != want {
		t.Errorf("JWKS selector = %+v, want %+v", got, want)
	}

	if got, want := (&JWTSecretKeySelector{Name: "jwt"}).Selector(), secretKey("jwt", "jwt-secret"); got != want {
		t.Errorf("JWT secret selector = %+v, want %+v", got, want)
	}
	if got, want := (&JWTPublicKeySelector{Name: "jwt", Key: "pub.pem"}).Selector(), secretKey("jwt", "pub.pem"); got != want {
		t.Errorf("JWT public key selector = %+v, want %+v", got, want)
	}
}

func secretKey(name, key string) corev1.SecretKeySelector {
	return corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: name}, Key: key}
}

func TestPDBBudget(t *testing.T) {
	one, half := intstr.FromInt32(1), intstr.FromString("50%")
	tests := []struct {
		name             string
		pdb              *PodDisruptionBudgetSpec
		wantMax, wantMin *intstr.IntOrString
	}{
		{"unset", nil, &one, nil},
		{"empty", &PodDisruptionBudgetSpec{}, &one, nil},
		{"maxUnavailable", &PodDisruptionBudgetSpec{MaxUnavailable: &half}, &half, nil},
		{"minAvailable", &PodDisruptionBudgetSpec{MinAvailable: &half}, nil, &half},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster("ns", "c")
			c.Spec.PodDisruptionBudget = tt.pdb
			gotMax, gotMin := c.PDBBudget()
			if !equalIntStr(gotMax, tt.wantMax) || !equalIntStr(gotMin, tt.wantMin) {
				t.Errorf("PDBBudget() = (%v, %v), want (%v, %v)", gotMax, gotMin, tt.wantMax, tt.wantMin)
			}
			if tt.pdb != nil && gotMax != nil && gotMax == tt.pdb.MaxUnavailable {
				t.Error("PDBBudget returned the spec's pointer; the caller could modify the spec")
			}
		})
	}
}

func equalIntStr(a, b *intstr.IntOrString) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func TestLimitsArgs(t *testing.T) {
	var none *LimitsSpec
	if got := none.Args(); got != nil {
		t.Errorf("nil limits: Args() = %q, want nil", got)
	}
	l := &LimitsSpec{
		MaxConnections:      ptr.To[int32](0),
		MaxConnectionsPerIP: ptr.To[int32](50),
		MaxTextBytes:        ptr.To[int32](8192),
		Rate:                "0.5",
		RateBurst:           ptr.To[int32](10),
	}
	want := []string{"--max-connections=0", "--max-connections-per-ip=50", "--max-text-bytes=8192", "--rate=0.5", "--rate-burst=10"}
	if got := l.Args(); !slices.Equal(got, want) {
		t.Errorf("Args() = %q, want %q", got, want)
	}
	if got := (&LimitsSpec{RateBurst: ptr.To[int32](5)}).Args(); !slices.Equal(got, []string{"--rate-burst=5"}) {
		t.Errorf("only rateBurst: Args() = %q", got)
	}
}

func TestSocketIOArgs(t *testing.T) {
	var none *SocketIOSpec
	if got := none.Args(); got != nil {
		t.Errorf("nil socketIO: Args() = %q, want nil (chatd's defaults)", got)
	}
	if got := (&SocketIOSpec{Enabled: ptr.To(false), Namespaces: []SocketIONamespace{{Name: "/"}}}).Args(); !slices.Equal(got, []string{"--socketio-namespaces="}) {
		t.Errorf("disabled: Args() = %q, want the endpoint off", got)
	}
	s := &SocketIOSpec{
		Enabled:        ptr.To(true),
		Namespaces:     []SocketIONamespace{{Name: "/"}, {Name: "/support"}, {Name: "/staff", TokenOnly: true}},
		RecoveryWindow: &metav1.Duration{Duration: 0},
		PingTimeout:    &metav1.Duration{Duration: 30 * time.Second},
	}
	want := []string{"--socketio-namespaces=/,/support,/staff:token", "--socketio-recovery-window=0s", "--socketio-ping-timeout=30s"}
	if got := s.Args(); !slices.Equal(got, want) {
		t.Errorf("Args() = %q, want %q", got, want)
	}
	if got := (&SocketIOSpec{}).Args(); len(got) != 0 {
		t.Errorf("empty socketIO: Args() = %q, want none", got)
	}
}

func TestSchemeRegistration(t *testing.T) {
	s := runtime.NewScheme()
	if err := AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"ChatCluster", "ChatClusterList"} {
		if !s.Recognizes(GroupVersion.WithKind(kind)) {
			t.Errorf("scheme does not recognize %s", kind)
		}
	}
}

func TestDeepCopyIsDeep(t *testing.T) {
	c := newCluster("ns", "c")
	c.Spec.Replicas = ptr.To[int32](3)
	c.Spec.PodTemplate = &PodTemplateOverrides{Labels: map[string]string{"team": "chat"}}
	cp := c.DeepCopy()
	*cp.Spec.Replicas = 5
	cp.Spec.PodTemplate.Labels["team"] = "other"
	if *c.Spec.Replicas != 3 || c.Spec.PodTemplate.Labels["team"] != "chat" {
		t.Error("DeepCopy shares memory with the original")
	}
}

// TestStorageHelpers: the claim names the StatefulSet controller gives,
// retention defaults, the reserve derived from the size (a quarter, at most
// chatd's 256Mi) or set, and the extra grace a pod with a store gets.
func TestStorageHelpers(t *testing.T) {
	c := newCluster("chat", "prod")
	if got := c.DataClaimName(12); got != "data-prod-12" {
		t.Errorf("DataClaimName(12) = %q, want data-prod-12", got)
	}
	var r RetentionSpec
	if r.MaxAgeOrDefault() != 720*time.Hour || r.MaxMessagesOrDefault() != 0 {
		t.Errorf("empty retention: %v %d, want 720h and 0", r.MaxAgeOrDefault(), r.MaxMessagesOrDefault())
	}
	r = RetentionSpec{MaxAge: &metav1.Duration{}, MaxMessages: ptr.To[int64](7)}
	if r.MaxAgeOrDefault() != 0 || r.MaxMessagesOrDefault() != 7 {
		t.Errorf("retention 0s, 7: %v %d", r.MaxAgeOrDefault(), r.MaxMessagesOrDefault())
	}
	for _, tc := range []struct {
		size, reserve string
		want          int64
	}{
		{"64Mi", "", 16 << 20},
		{"1Gi", "", 256 << 20},
		{"100Gi", "", 256 << 20},
		{"1Gi", "0", 0},
		{"100Gi", "2Gi", 2 << 30},
	} {
		s := StorageSpec{Size: resource.MustParse(tc.size)}
		if tc.reserve != "" {
			s.Reserve = ptr.To(resource.MustParse(tc.reserve))
		}
		if got := s.ReserveBytes(); got != tc.want {
			t.Errorf("size %s reserve %q: ReserveBytes() = %d, want %d", tc.size, tc.reserve, got, tc.want)
		}
	}
	memoryOnly := c.TerminationGracePeriodSeconds()
	c.Spec.Storage = &StorageSpec{Size: resource.MustParse("1Gi")}
	if got := c.TerminationGracePeriodSeconds(); got != memoryOnly+10 {
		t.Errorf("grace with storage %d, want %d + 10 s to close the store", got, memoryOnly)
	}
}

// TestPeerTLSDurations: the spec's durations win; a renewBefore not
// shorter than the lifetime becomes half of it.
func TestPeerTLSDurations(t *testing.T) {
	c := newCluster("chat", "prod")
	c.Spec.PeerTLS = PeerTLSSpec{CertificateDuration: &metav1.Duration{Duration: 2 * time.Hour}, RenewBefore: &metav1.Duration{Duration: 30 * time.Minute}}
	if c.PeerCertificateDuration() != 2*time.Hour || c.PeerRenewBefore() != 30*time.Minute {
		t.Errorf("durations %v, %v", c.PeerCertificateDuration(), c.PeerRenewBefore())
	}
	c.Spec.PeerTLS.RenewBefore.Duration = 119 * time.Minute
	if got := c.PeerRenewBefore(); got != 119*time.Minute {
		t.Errorf("PeerRenewBefore() = %v, want 119m", got)
	}
	c.Spec.PeerTLS.RenewBefore.Duration = 2 * time.Hour
	if got := c.PeerRenewBefore(); got != time.Hour {
		t.Errorf("PeerRenewBefore() = %v, want half the lifetime (1h)", got)
	}
	c.Spec.NetworkPolicy.Enabled = ptr.To(false)
	if c.NetworkPolicyEnabled() {
		t.Error("networkPolicy.enabled=false is still enabled")
	}
}
