//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	chatv1alpha1 "github.com/ringchat/ringchat/api/v1alpha1"
)

// keyringStepTimeout bounds how long one step of a gossip key rotation
// takes to reach every pod: the kubelet refreshes a Secret volume at its
// next sync of the pod (its one-minute sync period, plus the delay of its
// Secret cache), and chatd re-reads the file every 10 s
// (--cluster-reload-interval); three times that sum, for a loaded machine.
const keyringStepTimeout = 3 * (90*time.Second + 10*time.Second)

// podMetrics reads pod's /metrics from its admin listener (open without a
// token) as name → value, for samples without labels and with the labels
// written out as in the text format (name{l="v"}).
func podMetrics(ctx context.Context, pod *corev1.Pod) (map[string]float64, error) {
	port, err := adminPort(pod)
	if err != nil {
		return nil, err
	}
	code, body, err := env.adminGet(ctx, pod.Name, port, "", "/metrics")
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics on %s's admin port: %d", pod.Name, code)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out, sc.Err()
}

// TestAdminSurfaceAndPeerTLS: the cluster runs with the operator's
// inter-node certificates and gossip keyring (every pod trusts one CA, has
// a certificate valid for longer than now, holds one gossip key); the
// client port serves neither /admin/ nor /metrics; the admin listener
// refuses the admin API without the token and with a wrong one; the client
// Service exposes the client port alone and the metrics Service the admin
// port alone.
func TestAdminSurfaceAndPeerTLS(t *testing.T) {
	dumpOnFailure(t)
	ctx := context.Background()
	mustSettle(t, ctx, settleTimeout, originalExpectation())
	cc, err := env.chatCluster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pods, err := env.clusterPods(ctx, cc)
	if err != nil {
		t.Fatal(err)
	}
	token, err := env.adminToken(ctx, cc)
	if err != nil {
		t.Fatal(err)
	}
	now := float64(time.Now().Unix())
	for i := range pods {
		pod := &pods[i]
		m, err := podMetrics(ctx, pod)
		if err != nil {
			t.Fatal(err)
		}
		if m["chatd_peer_tls_trusted_cas"] != 1 || m["chatd_gossip_keys"] != 1 || m["chatd_peer_tls_cert_expiry_timestamp_seconds"] <= now {
			t.Errorf("%s: trusted CAs %v, gossip keys %v, certificate expiry %v (now %v)", pod.Name,
				m["chatd_peer_tls_trusted_cas"], m["chatd_gossip_keys"], m["chatd_peer_tls_cert_expiry_timestamp_seconds"], now)
		}
		port, _ := adminPort(pod)
		for tok, want := range map[string]int{"": http.StatusUnauthorized, "not-the-token": http.StatusUnauthorized, token: http.StatusOK} {
			code, _, err := env.adminGet(ctx, pod.Name, port, tok, "/admin/cluster")
			if err != nil {
				t.Fatal(err)
			}
			if code != want {
				t.Errorf("%s: /admin/cluster with token %q...: %d, want %d", pod.Name, tok[:min(len(tok), 3)], code, want)
			}
		}
		f, err := env.forwardHTTP(ctx, cc, pod)
		if err != nil {
			t.Fatal(err)
		}
		for _, path := range []string{"/admin/cluster", "/metrics"} {
			resp, err := http.Get("http://" + f.Addr + path)
			if err != nil {
				f.Close()
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("%s: client port %s answers %d, want 404", pod.Name, path, resp.StatusCode)
			}
		}
		f.Close()
	}
	svc, err := env.clientService(ctx, cc)
	if err != nil {
		t.Fatal(err)
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].TargetPort.StrVal != "http" {
		t.Errorf("client Service ports %+v, want the client port alone", svc.Spec.Ports)
	}
	var msvc corev1.Service
	if err := env.client.Get(ctx, client.ObjectKey{Namespace: cc.Namespace, Name: cc.MetricsServiceName()}, &msvc); err != nil {
		t.Fatal(err)
	}
	if len(msvc.Spec.Ports) != 1 || msvc.Spec.Ports[0].TargetPort.StrVal != "admin" {
		t.Errorf("metrics Service ports %+v, want the admin port alone", msvc.Spec.Ports)
	}
}

// TestNetworkPolicyRendered: the chatd pods' NetworkPolicy exists with the
// documented rules. The offline kind cluster's pod network is the bridge
// CNI plugin (hack/e2e.sh), which does not enforce NetworkPolicy (nor does
// kind's default kindnet), so a pod of another ChatCluster could still
// reach gossip here: what is checked is the object the API server stored.
func TestNetworkPolicyRendered(t *testing.T) {
	ctx := context.Background()
	cc, err := env.chatCluster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var np networkingv1.NetworkPolicy
	if err := env.client.Get(ctx, client.ObjectKey{Namespace: cc.Namespace, Name: cc.NetworkPolicyName()}, &np); err != nil {
		t.Fatal(err)
	}
	var rules []string
	for _, r := range np.Spec.Ingress {
		var ports []string
		for _, p := range r.Ports {
			ports = append(ports, fmt.Sprintf("%s/%s", *p.Protocol, p.Port.String()))
		}
		var from []string
		for _, f := range r.From {
			switch {
			case f.PodSelector != nil && f.NamespaceSelector == nil:
				from = append(from, "pods:"+f.PodSelector.MatchLabels[chatv1alpha1.LabelCluster])
			case f.NamespaceSelector != nil:
				from = append(from, "namespace:"+f.NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"])
			}
		}
		rules = append(rules, strings.Join(ports, ",")+" from "+strings.Join(from, ","))
	}
	want := []string{
		"TCP/8080 from ",
		"TCP/7946,UDP/7946,TCP/7947 from pods:" + cc.Name,
		"TCP/9090 from namespace:ringchat-system",
	}
	if strings.Join(rules, "; ") != strings.Join(want, "; ") {
		t.Errorf("NetworkPolicy rules\n got %q\nwant %q", rules, want)
	}
}

// TestNoSecretInPodLogs: no chatd pod's log holds a gossip key, the admin
// token, or a line of a private key of the peer TLS or CA Secrets.
func TestNoSecretInPodLogs(t *testing.T) {
	ctx := context.Background()
	cc, err := env.chatCluster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	needles := map[string]string{}
	for _, name := range []string{cc.GossipKeyringSecretName(), cc.AdminSecretName(), cc.PeerTLSSecretName(), cc.PeerCASecretName()} {
		var s corev1.Secret
		if err := env.client.Get(ctx, client.ObjectKey{Namespace: cc.Namespace, Name: name}, &s); err != nil {
			t.Fatal(err)
		}
		for k, v := range s.Data {
			if strings.HasSuffix(k, ".crt") {
				continue // certificates are public
			}
			for _, line := range strings.Split(string(v), "\n") {
				if line = strings.TrimSpace(line); len(line) >= 16 && !strings.HasPrefix(line, "-----") {
					needles[line] = name + "/" + k
				}
			}
		}
	}
	if len(needles) < 5 {
		t.Fatalf("only %d secret lines to look for", len(needles))
	}
	pods, err := env.clusterPods(ctx, cc)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, p := range pods {
		logs, err := env.clientset.CoreV1().Pods(p.Namespace).GetLogs(p.Name, &corev1.PodLogOptions{Container: "chatd"}).DoRaw(ctx)
		if err != nil {
			t.Fatal(err)
		}
		total += len(logs)
		for needle, what := range needles {
			if bytes.Contains(logs, []byte(needle)) {
				t.Errorf("pod %s's log holds a line of %s", p.Name, what)
			}
		}
	}
	if total == 0 {
		t.Fatal("the chatd pods logged nothing")
	}
	t.Logf("%d bytes of logs of %d pods checked for %d secret lines", total, len(pods), len(needles))
}

// TestGossipKeyRotationUnderTraffic: under steady traffic, the generated
// gossip keyring rotates in its three steps (add, promote, remove), each
// asked with the annotation once every pod applied the previous one
// (chatd_gossip_keyring_reloads_total{result="applied"} counts it, and
// chatd_gossip_keys says how many keys a pod holds). No pod restarts, the
// members stay together, and no acknowledged message is lost or duplicated.
func TestGossipKeyRotationUnderTraffic(t *testing.T) {
	ctx, want := beginChange(t)
	cc, err := env.chatCluster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pods, err := env.clusterPods(ctx, cc)
	if err != nil {
		t.Fatal(err)
	}
	const applied = `chatd_gossip_keyring_reloads_total{result="applied"}`
	base := map[string]float64{}
	for i := range pods {
		m, err := podMetrics(ctx, &pods[i])
		if err != nil {
			t.Fatal(err)
		}
		base[pods[i].Name] = m[applied]
	}
	tr := startTraffic(t, ctx)
	t.Cleanup(func() {
		_ = env.annotate(context.Background(), chatv1alpha1.AnnotationGossipKeyRotation, "")
	})
	for n, step := range []struct {
		name string
		keys float64
	}{{chatv1alpha1.GossipRotationAdd, 2}, {chatv1alpha1.GossipRotationPromote, 2}, {chatv1alpha1.GossipRotationRemove, 1}} {
		start := time.Now()
		if err := env.annotate(ctx, chatv1alpha1.AnnotationGossipKeyRotation, step.name); err != nil {
			t.Fatal(err)
		}
		err := waitFor(ctx, keyringStepTimeout, "every pod applies "+step.name, func(ctx context.Context) (string, bool) {
			for i := range pods {
				m, err := podMetrics(ctx, &pods[i])
				if err != nil {
					return err.Error(), false
				}
				if m[applied] < base[pods[i].Name]+float64(n+1) || m["chatd_gossip_keys"] != step.keys {
					return fmt.Sprintf("%s: %v keyring changes applied, %v keys", pods[i].Name, m[applied]-base[pods[i].Name], m["chatd_gossip_keys"]), false
				}
			}
			return "", true
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("timing: gossip key rotation step %s applied by every pod in %v", step.name, time.Since(start).Round(time.Second))
		tr.flowing()
	}
	mustSettle(t, ctx, settleTimeout, want)
	after, err := env.clusterPods(ctx, cc)
	if err != nil {
		t.Fatal(err)
	}
	for i := range after {
		if after[i].UID != pods[i].UID {
			t.Errorf("pod %s was replaced during the rotation", after[i].Name)
		}
		for _, s := range after[i].Status.ContainerStatuses {
			for _, b := range pods[i].Status.ContainerStatuses {
				if s.Name == b.Name && s.RestartCount != b.RestartCount {
					t.Errorf("pod %s container %s restarted during the rotation", after[i].Name, s.Name)
				}
			}
		}
	}
	tr.verify()
}

// TestPeerCertificateRenewalUnderTraffic: under steady traffic, the
// ChatCluster's certificates are made to fall due about a minute after each
// issue (certificateDuration 1h, renewBefore 59m), so the operator renews
// every pod's certificate again and again; the test waits until every pod
// has taken two new certificates (chatd_peer_tls_cert_expiry_timestamp_seconds
// moves twice), then puts the defaults back (which renews them once more,
// for 90 days). No pod restarts, the members stay together, and no
// acknowledged message is lost or duplicated.
func TestPeerCertificateRenewalUnderTraffic(t *testing.T) {
	ctx, want := beginChange(t)
	cc, err := env.chatCluster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pods, err := env.clusterPods(ctx, cc)
	if err != nil {
		t.Fatal(err)
	}
	const expiry = "chatd_peer_tls_cert_expiry_timestamp_seconds"
	seen := map[string][]float64{}
	for i := range pods {
		m, err := podMetrics(ctx, &pods[i])
		if err != nil {
			t.Fatal(err)
		}
		seen[pods[i].Name] = []float64{m[expiry]}
	}
	tr := startTraffic(t, ctx)
	t.Cleanup(func() {
		if err := env.updateSpec(context.Background(), func(s *chatv1alpha1.ChatClusterSpec) { s.PeerTLS = env.original.PeerTLS }); err != nil {
			t.Errorf("restoring spec.peerTLS: %v", err)
		}
	})
	start := time.Now()
	if err := env.updateSpec(ctx, func(s *chatv1alpha1.ChatClusterSpec) {
		s.PeerTLS = chatv1alpha1.PeerTLSSpec{CertificateDuration: &metav1.Duration{Duration: time.Hour}, RenewBefore: &metav1.Duration{Duration: 59 * time.Minute}}
	}); err != nil {
		t.Fatal(err)
	}
	// Two renewals: each about a minute after the previous certificate,
	// plus the kubelet's refresh and chatd's reload (keyringStepTimeout
	// bounds one such hop).
	err = waitFor(ctx, 2*(time.Minute+keyringStepTimeout), "every pod took two renewed certificates", func(ctx context.Context) (string, bool) {
		for i := range pods {
			m, err := podMetrics(ctx, &pods[i])
			if err != nil {
				return err.Error(), false
			}
			s := seen[pods[i].Name]
			if v := m[expiry]; v != s[len(s)-1] {
				seen[pods[i].Name] = append(s, v)
			}
		}
		for name, s := range seen {
			if len(s) < 3 {
				return fmt.Sprintf("%s took %d new certificates", name, len(s)-1), false
			}
		}
		return "", true
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("timing: two certificate renewals taken by every pod in %v", time.Since(start).Round(time.Second))
	tr.flowing()
	mustSettle(t, ctx, settleTimeout, want)
	after, err := env.clusterPods(ctx, cc)
	if err != nil {
		t.Fatal(err)
	}
	for i := range after {
		if after[i].UID != pods[i].UID {
			t.Errorf("pod %s was replaced during the renewals", after[i].Name)
		}
	}
	tr.verify()
}
