package resources

import (
	"maps"
	"reflect"
	"strings"
	"testing"
	"time"

	chatv1alpha1 "github.com/ringchat/ringchat/api/v1alpha1"
	"github.com/ringchat/ringchat/controllers/chatdconfig"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// TestPodTemplateOverridesCannotReplaceTheOperators: podTemplate labels
// and env add to the operator's, never replace them.
func TestPodTemplateOverridesCannotReplaceTheOperators(t *testing.T) {
	cc := testCluster(3)
	cc.Spec.PodTemplate = &chatv1alpha1.PodTemplateOverrides{
		Labels: map[string]string{"team": "chat", LabelManagedBy: "someone-else"},
		Env:    []corev1.EnvVar{{Name: "CHATD_LOG_LEVEL", Value: "debug"}, {Name: chatdconfig.EnvPodName, Value: "fake"}},
	}
	tpl := PodTemplate(cc, chatdconfig.Desired(cc, 3, nil))
	want := maps.Clone(CommonLabels(cc))
	want["team"] = "chat"
	if !reflect.DeepEqual(tpl.Labels, want) {
		t.Errorf("pod labels %v, want %v", tpl.Labels, want)
	}
	var names []string
	for _, e := range tpl.Spec.Containers[0].Env {
		names = append(names, e.Name)
		if e.Name == chatdconfig.EnvPodName && e.ValueFrom == nil {
			t.Errorf("the spec replaced %s: %+v", chatdconfig.EnvPodName, e)
		}
	}
	if n := len(names); n != 3 || names[n-1] != "CHATD_LOG_LEVEL" {
		t.Errorf("env %v, want the operator's two (POD_NAME, POD_IP) and CHATD_LOG_LEVEL", names)
	}
}

// TestPodTemplateSecretsAreReadOnlyFiles: every Secret the pod uses is a
// read-only volume mount, none reaches the environment, and the arguments
// name the files chatd reads.
func TestPodTemplateSecretsAreReadOnlyFiles(t *testing.T) {
	cc := testCluster(3)
	cc.Spec.Auth.JWKSSecretRef = &chatv1alpha1.JWKSSecretKeySelector{Name: "keys"}
	cc.Spec.TLS = &chatv1alpha1.TLSSpec{SecretName: "web-tls"}
	cc.Spec.ServerAPI = &chatv1alpha1.ServerAPISpec{Enabled: true}
	cfg := chatdconfig.Desired(cc, 3, nil)
	tpl := PodTemplate(cc, cfg)
	c := tpl.Spec.Containers[0]
	for _, e := range c.Env {
		if e.ValueFrom != nil && (e.ValueFrom.SecretKeyRef != nil) {
			t.Errorf("env %s comes from a Secret", e.Name)
		}
	}
	if len(c.EnvFrom) != 0 {
		t.Errorf("envFrom %+v", c.EnvFrom)
	}
	secrets := map[string]string{} // volume -> Secret
	for _, v := range tpl.Spec.Volumes {
		if v.Secret != nil {
			secrets[v.Name] = v.Secret.SecretName
			if m := *v.Secret.DefaultMode; m != 0o440 {
				t.Errorf("volume %s mode %o", v.Name, m)
			}
		}
	}
	want := map[string]string{JWTVolumeName: "keys", TLSVolumeName: "web-tls", PeerTLSVolumeName: "prod-peer-tls", GossipVolumeName: "prod-gossip-keyring", AdminVolumeName: "prod-admin", APIVolumeName: "prod-api"}
	if !reflect.DeepEqual(secrets, want) {
		t.Errorf("secret volumes %v, want %v", secrets, want)
	}
	for _, m := range c.VolumeMounts {
		if _, ok := secrets[m.Name]; ok && (!m.ReadOnly || m.SubPath != "") {
			t.Errorf("mount %+v: want read-only, no subPath", m)
		}
	}
	args := map[string]bool{}
	for _, a := range cfg.Args {
		args[a] = true
	}
	for _, a := range []string{
		"--peer-tls-cert-file=/etc/chatd/peer/$(POD_NAME).crt",
		"--peer-tls-key-file=/etc/chatd/peer/$(POD_NAME).key",
		"--peer-tls-ca-file=/etc/chatd/peer/ca.crt",
		"--gossip-keyring-file=/etc/chatd/gossip/keyring",
		"--admin-listen=0.0.0.0:9090",
		"--admin-token-file=/etc/chatd/admin/token",
		"--jwt-jwks-file=/etc/chatd/jwt/jwks.json",
		"--api-key-file=/etc/chatd/api/keys",
	} {
		if !args[a] {
			t.Errorf("no argument %s in %q", a, cfg.Args)
		}
	}
	var admin bool
	for _, p := range c.Ports {
		admin = admin || (p.Name == chatdconfig.AdminPortName && p.ContainerPort == chatdconfig.AdminPort)
	}
	if !admin {
		t.Errorf("no admin port in %+v", c.Ports)
	}
}

// TestPodTemplateServerAPIOffByDefault: without spec.serverAPI no API keys
// are mounted and chatd gets no --api-key-file (its /api/v1/ answers 404).
func TestPodTemplateServerAPIOffByDefault(t *testing.T) {
	for _, api := range []*chatv1alpha1.ServerAPISpec{nil, {Enabled: false}} {
		cc := testCluster(3)
		cc.Spec.ServerAPI = api
		cfg := chatdconfig.Desired(cc, 3, nil)
		tpl := PodTemplate(cc, cfg)
		for _, v := range tpl.Spec.Volumes {
			if v.Name == APIVolumeName {
				t.Errorf("serverAPI %+v: volume %+v", api, v)
			}
		}
		for _, a := range cfg.Args {
			if strings.HasPrefix(a, "--api-key-file") {
				t.Errorf("serverAPI %+v: argument %s", api, a)
			}
		}
	}
}

// TestPodTemplateHooks: spec.hooks become chatd's --hook-* flags, and the
// signing secret a read-only file; without hooks there are neither.
func TestPodTemplateHooks(t *testing.T) {
	cc := testCluster(3)
	cc.Spec.Hooks = &chatv1alpha1.HooksSpec{
		Connect:          &chatv1alpha1.HookSpec{URL: "http://backend.shop.svc:8080/chat/connect", OnFailure: "allow"},
		Send:             &chatv1alpha1.HookSpec{URL: "https://mod.shop.svc/send", Timeout: &metav1.Duration{Duration: 300 * time.Millisecond}},
		Retries:          ptr.To[int32](2),
		BreakerFailures:  ptr.To[int32](10),
		BreakerOpen:      &metav1.Duration{Duration: 30 * time.Second},
		SigningSecretRef: &chatv1alpha1.HookSecretKeySelector{Name: "shop-hooks"},
		EventStream:      &chatv1alpha1.EventStreamSpec{URL: "http://indexer.shop.svc/events", Timeout: &metav1.Duration{Duration: 2 * time.Second}, BatchSize: ptr.To[int32](100)},
	}
	cfg := chatdconfig.Desired(cc, 3, nil)
	var hookArgs []string
	for _, a := range cfg.Args {
		if strings.HasPrefix(a, "--hook-") || strings.HasPrefix(a, "--event-stream-") {
			hookArgs = append(hookArgs, a)
		}
	}
	want := []string{
		"--hook-connect-url=http://backend.shop.svc:8080/chat/connect",
		"--hook-connect-on-failure=allow",
		"--hook-send-url=https://mod.shop.svc/send",
		"--hook-send-timeout=300ms",
		"--hook-retries=2",
		"--hook-breaker-failures=10",
		"--hook-breaker-open=30s",
		"--hook-secret-file=/etc/chatd/hooks/secret",
		"--event-stream-url=http://indexer.shop.svc/events",
		"--event-stream-timeout=2s",
		"--event-stream-batch=100",
	}
	if !reflect.DeepEqual(hookArgs, want) {
		t.Errorf("hook arguments %q, want %q", hookArgs, want)
	}
	tpl := PodTemplate(cc, cfg)
	var vol *corev1.Volume
	for i, v := range tpl.Spec.Volumes {
		if v.Name == HooksVolumeName {
			vol = &tpl.Spec.Volumes[i]
		}
	}
	if vol == nil || vol.Secret == nil || vol.Secret.SecretName != "shop-hooks" ||
		len(vol.Secret.Items) != 1 || vol.Secret.Items[0].Key != chatv1alpha1.DefaultHookSecretKey || vol.Secret.Items[0].Path != chatdconfig.HookSecretFileName {
		t.Fatalf("hooks volume %+v", vol)
	}
	var mounted bool
	for _, m := range tpl.Spec.Containers[0].VolumeMounts {
		mounted = mounted || (m.Name == HooksVolumeName && m.MountPath == chatdconfig.HooksMountDir && m.ReadOnly)
	}
	if !mounted {
		t.Errorf("hooks volume not mounted read-only at %s", chatdconfig.HooksMountDir)
	}

	cc.Spec.Hooks = nil
	for _, a := range chatdconfig.Desired(cc, 3, nil).Args {
		if strings.HasPrefix(a, "--hook-") {
			t.Errorf("without hooks: argument %s", a)
		}
	}
}
