package chatdconfig

import (
	"slices"
	"strings"
	"testing"
	"time"

	chatv1alpha1 "github.com/ringchat/ringchat/api/v1alpha1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func testCluster(replicas int32) *chatv1alpha1.ChatCluster {
	return &chatv1alpha1.ChatCluster{
		ObjectMeta: metav1.ObjectMeta{Namespace: "chat", Name: "prod", Generation: 4},
		Spec:       chatv1alpha1.ChatClusterSpec{Replicas: ptr.To(replicas), Auth: chatv1alpha1.AuthSpec{AllowAnonymous: true}},
	}
}

func TestArgsOfASampleCluster(t *testing.T) {
	cc := testCluster(3)
	got := Args(cc, 3)
	want := []string{
		"--listen=0.0.0.0:8080",
		"--node-name=$(POD_NAME)",
		"--gossip-addr=0.0.0.0:7946",
		"--gossip-advertise-addr=$(POD_IP):7946",
		"--rpc-addr=0.0.0.0:7947",
		"--rpc-advertise-addr=$(POD_IP):7947",
		"--join=prod-headless.chat.svc:7946",
		"--cluster-label=chat/prod",
		"--peer-tls-cert-file=/etc/chatd/peer/$(POD_NAME).crt",
		"--peer-tls-key-file=/etc/chatd/peer/$(POD_NAME).key",
		"--peer-tls-ca-file=/etc/chatd/peer/ca.crt",
		"--gossip-keyring-file=/etc/chatd/gossip/keyring",
		"--admin-listen=0.0.0.0:9090",
		"--admin-token-file=/etc/chatd/admin/token",
		"--expected-nodes-file=/etc/chatd/cluster/expected-nodes",
		"--replication-factor=2",
		"--history-size=1000",
		"--send-queue=4096",
		"--drain-timeout=25s",
		"--shutdown-timeout=20s",
		"--allow-anonymous=true",
	}
	if !slices.Equal(got, want) {
		t.Errorf("args:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestArgsAuthAndLimits(t *testing.T) {
	cc := testCluster(5)
	cc.Spec.Auth = chatv1alpha1.AuthSpec{
		JWTSecretRef: &chatv1alpha1.JWTSecretKeySelector{Name: "jwt", Key: ".."},
		Issuer:       "https://idp.example",
		Audience:     "chatd",
	}
	cc.Spec.HistorySize = 5000
	cc.Spec.Limits = &chatv1alpha1.LimitsSpec{MaxConnections: ptr.To[int32](10), Rate: "2.5"}
	args := Args(cc, 5)
	for _, w := range []string{
		"--allow-anonymous=false",
		"--jwt-secret-file=/etc/chatd/jwt/jwt-secret",
		"--jwt-issuer=https://idp.example",
		"--jwt-audience=chatd",
		"--history-size=5000",
		"--send-queue=5016",
		"--max-connections=10",
		"--rate=2.5",
	} {
		if !slices.Contains(args, w) {
			t.Errorf("args lack %s: %q", w, args)
		}
	}
	cc.Spec.Auth = chatv1alpha1.AuthSpec{JWTPublicKeySecretRef: &chatv1alpha1.JWTPublicKeySelector{Name: "pub"}}
	if args := Args(cc, 5); !slices.Contains(args, "--jwt-public-key-file=/etc/chatd/jwt/jwt-public-key") {
		t.Errorf("args lack the public key file: %q", args)
	}
	for _, a := range args {
		if strings.HasPrefix(a, "--allowed-origins") {
			t.Errorf("--allowed-origins is set by default: %s", a)
		}
	}
}

// TestArgsSocketIO: spec.socketIO reaches chatd as its Socket.IO flags;
// left out, no flag (chatd's defaults).
func TestArgsSocketIO(t *testing.T) {
	cc := testCluster(3)
	for _, a := range Args(cc, 3) {
		if strings.HasPrefix(a, "--socketio-") {
			t.Errorf("a Socket.IO flag without spec.socketIO: %s", a)
		}
	}
	cc.Spec.SocketIO = &chatv1alpha1.SocketIOSpec{
		Namespaces:  []chatv1alpha1.SocketIONamespace{{Name: "/"}, {Name: "/staff", TokenOnly: true}},
		PingTimeout: &metav1.Duration{Duration: 30 * time.Second},
	}
	args := Args(cc, 3)
	for _, w := range []string{"--socketio-namespaces=/,/staff:token", "--socketio-ping-timeout=30s"} {
		if !slices.Contains(args, w) {
			t.Errorf("args lack %s: %q", w, args)
		}
	}
	cc.Spec.SocketIO.Enabled = ptr.To(false)
	if args := Args(cc, 3); !slices.Contains(args, "--socketio-namespaces=") {
		t.Errorf("socketIO disabled: args lack --socketio-namespaces=: %q", args)
	}
}

func TestBootstrapOnlyForASingleNode(t *testing.T) {
	for _, tc := range []struct {
		expected int32
		want     bool
	}{{1, true}, {2, false}, {3, false}, {0, false}} {
		args := Args(testCluster(tc.expected), tc.expected)
		if got := slices.Contains(args, "--bootstrap"); got != tc.want {
			t.Errorf("expected nodes %d: --bootstrap %v, want %v", tc.expected, got, tc.want)
		}
	}
}

func TestConfigHash(t *testing.T) {
	cc := testCluster(3)
	base := Desired(cc, 3, []string{"a", "b"})
	if again := Desired(cc, 3, []string{"b", "a"}); again.Hash != base.Hash {
		t.Errorf("hash depends on the order of secret versions")
	}
	if base.Data[ArgsKey] != strings.Join(base.Args, "\n")+"\n" {
		t.Errorf("ConfigMap args %q", base.Data[ArgsKey])
	}
	changes := map[string]func(*chatv1alpha1.ChatCluster) (int32, []string){
		"history size": func(c *chatv1alpha1.ChatCluster) (int32, []string) {
			c.Spec.HistorySize = 2000
			return 3, []string{"a", "b"}
		},
		"secret version": func(*chatv1alpha1.ChatCluster) (int32, []string) { return 3, []string{"a", "c"} },
	}
	for name, change := range changes {
		c := cc.DeepCopy()
		size, versions := change(c)
		if Desired(c, size, versions).Hash == base.Hash {
			t.Errorf("changing the %s does not change the hash", name)
		}
	}
	// The cluster size is read at run time: changing it must not roll the
	// pods, only the ConfigMap key they read.
	resized := Desired(cc, 5, []string{"a", "b"})
	if resized.Hash != base.Hash {
		t.Errorf("changing the expected nodes changes the hash, which would roll every pod")
	}
	if got := resized.Data[ExpectedNodesKey]; got != "5\n" {
		t.Errorf("ConfigMap %s = %q, want 5", ExpectedNodesKey, got)
	}
	if HashData(map[string]string{"ab": "c"}) == HashData(map[string]string{"a": "bc"}) {
		t.Errorf("hashData is ambiguous")
	}
}

// TestArgsStorage: with spec.storage chatd stores under the volume's mount
// with the retention and reserve of the spec (defaults filled in); without
// it, no storage flag at all (memory-only).
func TestArgsStorage(t *testing.T) {
	cc := testCluster(3)
	for _, a := range Args(cc, 3) {
		if strings.HasPrefix(a, "--data-dir") || strings.HasPrefix(a, "--history-retention") ||
			strings.HasPrefix(a, "--history-max-messages") || strings.HasPrefix(a, "--storage-reserve-bytes") {
			t.Errorf("memory-only cluster has the storage flag %s", a)
		}
	}

	cc.Spec.Storage = &chatv1alpha1.StorageSpec{Size: resource.MustParse("10Gi")}
	want := []string{
		"--data-dir=/var/lib/chatd",
		"--history-retention=720h0m0s",
		"--history-max-messages=0",
		"--storage-reserve-bytes=268435456", // a quarter of 10Gi is more than 256Mi
	}
	if got := StorageArgs(cc.Spec.Storage); !slices.Equal(got, want) {
		t.Errorf("defaults: %q, want %q", got, want)
	}
	if got := Args(cc, 3); !slices.Contains(got, want[0]) {
		t.Errorf("chatdArgs lack %s: %q", want[0], got)
	}

	cc.Spec.Storage = &chatv1alpha1.StorageSpec{
		Size:      resource.MustParse("512Mi"),
		Retention: chatv1alpha1.RetentionSpec{MaxAge: &metav1.Duration{Duration: 0}, MaxMessages: ptr.To[int64](5000)},
	}
	want = []string{"--data-dir=/var/lib/chatd", "--history-retention=0s", "--history-max-messages=5000",
		"--storage-reserve-bytes=134217728"} // a quarter of 512Mi
	if got := StorageArgs(cc.Spec.Storage); !slices.Equal(got, want) {
		t.Errorf("small volume, retention set: %q, want %q", got, want)
	}

	cc.Spec.Storage.Reserve = ptr.To(resource.MustParse("1Mi"))
	if got := StorageArgs(cc.Spec.Storage); got[3] != "--storage-reserve-bytes=1048576" {
		t.Errorf("reserve set: %q, want --storage-reserve-bytes=1048576", got[3])
	}
}
