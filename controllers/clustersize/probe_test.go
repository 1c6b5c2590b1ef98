package clustersize

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/ringchat/ringchat/controllers/chatdconfig"
	"github.com/ringchat/ringchat/controllers/internal/chatdtest"
)

// applyBound bounds how long chatd takes to apply a rewritten
// --expected-nodes-file: it polls every 2 s; generous for a loaded machine.
const applyBound = 30 * time.Second

// probeTimeout is the probers' request timeout in these tests.
const probeTimeout = 5 * time.Second

// podAt is a chatd pod as the StatefulSet makes it, whose IP and admin port
// are addr's (the HTTP port is another).
func podAt(t *testing.T, name, addr string, scheme corev1.URIScheme) *corev1.Pod {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(port)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "chat"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name:  chatdconfig.ContainerName,
			Ports: []corev1.ContainerPort{{Name: chatdconfig.HTTPPortName, ContainerPort: 1}, {Name: chatdconfig.AdminPortName, ContainerPort: int32(n)}},
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: "/readyz", Port: intstr.FromString(chatdconfig.HTTPPortName), Scheme: scheme}}},
		}}},
		Status: corev1.PodStatus{PodIP: host},
	}
}

// waitApplied asks pod until it says want, failing after applyBound.
func waitApplied(t *testing.T, p *HTTPProber, pod *corev1.Pod, want int32) {
	t.Helper()
	deadline := time.Now().Add(applyBound)
	for {
		got, err := p.Applied(context.Background(), pod)
		if err == nil && got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod %s: applies %d (%v) after %v, want %d", pod.Name, got, err, applyBound, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestHTTPProberFollowsTheFile: a real chatd reports the size of its
// --expected-nodes-file, and the new one once the file is rewritten.
func TestHTTPProberFollowsTheFile(t *testing.T) {
	c := chatdtest.Start(t, "chat-0", 3)
	p := NewHTTPProber(probeTimeout)
	defer p.Close()
	pod := podAt(t, "chat-0", c.AdminAddr, corev1.URISchemeHTTP)
	if got, err := p.Applied(context.Background(), pod); err != nil || got != 3 {
		t.Fatalf("Applied = %d, %v; want 3", got, err)
	}
	if err := c.SetExpectedNodes(5); err != nil {
		t.Fatal(err)
	}
	waitApplied(t, p, pod, 5)
}

// TestHTTPProberTLS: a chatd serving TLS (spec.tls) is asked over HTTPS,
// as its readiness probe says; asked over plain HTTP it answers nothing
// useful.
func TestHTTPProberTLS(t *testing.T) {
	cert, key := selfSignedCert(t)
	c := chatdtest.Start(t, "chat-1", 4, "--tls-cert-file", cert, "--tls-key-file", key)
	p := NewHTTPProber(probeTimeout)
	defer p.Close()
	if got, err := p.Applied(context.Background(), podAt(t, "chat-1", c.AdminAddr, corev1.URISchemeHTTPS)); err != nil || got != 4 {
		t.Fatalf("over HTTPS: Applied = %d, %v; want 4", got, err)
	}
	if got, err := p.Applied(context.Background(), podAt(t, "chat-1", c.AdminAddr, corev1.URISchemeHTTP)); err == nil {
		t.Fatalf("over plain HTTP to a TLS chatd: Applied = %d, want an error", got)
	}
}

// TestMetricsURLPort: the admin port, or the http port of a pod made
// before chatd had an admin listener.
func TestMetricsURLPort(t *testing.T) {
	pod := podAt(t, "chat-0", "10.0.0.7:9090", corev1.URISchemeHTTPS)
	if u, err := MetricsURL(pod); err != nil || u != "https://10.0.0.7:9090/metrics" {
		t.Errorf("MetricsURL = %q, %v", u, err)
	}
	pod.Spec.Containers[0].Ports = pod.Spec.Containers[0].Ports[:1] // http (port 1) alone
	if u, err := MetricsURL(pod); err != nil || u != "https://10.0.0.7:1/metrics" {
		t.Errorf("MetricsURL of an earlier pod = %q, %v", u, err)
	}
}

// TestHTTPProberErrors: every way of not knowing is an error that names
// the pod and says why.
func TestHTTPProberErrors(t *testing.T) {
	p := NewHTTPProber(probeTimeout)
	defer p.Close()
	serve := func(status int, body string) string {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(status)
			fmt.Fprint(w, body)
		}))
		t.Cleanup(s.Close)
		return strings.TrimPrefix(s.URL, "http://")
	}
	closed := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		return addr
	}()
	noIP := podAt(t, "chat-0", "127.0.0.1:1", corev1.URISchemeHTTP)
	noIP.Status.PodIP = ""
	noPort := podAt(t, "chat-0", "127.0.0.1:1", corev1.URISchemeHTTP)
	noPort.Spec.Containers[0].Ports[0].Name = "web"
	noPort.Spec.Containers[0].Ports[1].Name = "debug"
	noContainer := podAt(t, "chat-0", "127.0.0.1:1", corev1.URISchemeHTTP)
	noContainer.Spec.Containers[0].Name = "sidecar"
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
		want string
	}{
		{"no IP yet", noIP, "has no IP yet"},
		{"no admin or http port", noPort, `no port named "admin" or "http"`},
		{"no chatd container", noContainer, `no container "chatd"`},
		{"nobody listening", podAt(t, "chat-0", closed, corev1.URISchemeHTTP), "connection refused"},
		{"an error status", podAt(t, "chat-0", serve(http.StatusServiceUnavailable, "busy"), corev1.URISchemeHTTP), "503"},
		{"no such gauge", podAt(t, "chat-0", serve(http.StatusOK, "chatd_members 3\n"), corev1.URISchemeHTTP), "no chatd_expected_nodes gauge"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := p.Applied(context.Background(), tc.pod)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "chat-0") {
				t.Errorf("Applied: %v; want an error naming chat-0 and containing %q", err, tc.want)
			}
		})
	}
}

func TestParseExpectedNodes(t *testing.T) {
	const help = "# HELP chatd_expected_nodes Cluster size.\n# TYPE chatd_expected_nodes gauge\n"
	for _, tc := range []struct {
		text string
		want int32
		err  string
	}{
		{help + "chatd_expected_nodes 5\n", 5, ""},
		{"chatd_members 2\n" + help + "chatd_expected_nodes 0\n", 0, ""},
		{help + "chatd_expected_nodes 2.5\n", 0, "not a cluster size"},
		{help + "chatd_expected_nodes -1\n", 0, "not a cluster size"},
		{help + "chatd_expected_nodes 1e12\n", 0, "not a cluster size"},
		{"chatd_members 2\n", 0, "no chatd_expected_nodes"},
		{"chatd_expected_nodes{x=\"a\"} 1\nchatd_expected_nodes{x=\"b\"} 2\n", 0, "not a single gauge"},
		{"{{{ not metrics\n", 0, "reading the metrics"},
	} {
		got, err := ParseExpectedNodes(strings.NewReader(tc.text))
		switch {
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("%q: %d, %v; want %d", tc.text, got, err, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: %d, %v; want an error containing %q", tc.text, got, err, tc.err)
		}
	}
}

// proberFunc is a Prober from a function, for the pure functions' tests.
type proberFunc func(*corev1.Pod) (int32, error)

func (f proberFunc) Applied(_ context.Context, pod *corev1.Pod) (int32, error) { return f(pod) }

func TestObserveAllApplyBehind(t *testing.T) {
	pods := []corev1.Pod{{ObjectMeta: metav1.ObjectMeta{Name: "chat-0"}}, {ObjectMeta: metav1.ObjectMeta{Name: "chat-1"}}, {ObjectMeta: metav1.ObjectMeta{Name: "chat-2"}}}
	said := map[string]int32{"chat-0": 5, "chat-1": 3}
	reports := Observe(context.Background(), proberFunc(func(p *corev1.Pod) (int32, error) {
		if v, ok := said[p.Name]; ok {
			return v, nil
		}
		return 0, fmt.Errorf("pod %s: %w", p.Name, context.DeadlineExceeded)
	}), pods)
	for i, r := range reports {
		if r.Pod != &pods[i] {
			t.Errorf("report %d is about %s, want %s", i, r.Pod.Name, pods[i].Name)
		}
	}
	if AllApply(reports, 5) {
		t.Errorf("AllApply(5) with chat-1 at 3 and chat-2 silent")
	}
	if got, want := Behind(reports, 5), "chat-1 applies 3; chat-2: no answer in time"; got != want {
		t.Errorf("Behind = %q, want %q", got, want)
	}
	if !AllApply(reports[:1], 5) || !AllApply(nil, 5) {
		t.Errorf("AllApply of chat-0 alone, or of no pod, is false")
	}
	if !errors.Is(reports[2].Err, context.DeadlineExceeded) {
		t.Errorf("chat-2's error %v", reports[2].Err)
	}
}

func TestNeedsNudge(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	const resync = 5 * time.Second
	pod := func(size string, at time.Time, deleting bool) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "chat-0", Annotations: map[string]string{}}, Status: corev1.PodStatus{PodIP: "10.0.0.7"}}
		if size != "" {
			Nudge(p, 0, at)
			p.Annotations[AnnotationExpectedNodes] = size
		}
		if deleting {
			p.DeletionTimestamp = &metav1.Time{Time: now}
		}
		return p
	}
	notStarted := pod("", now, false)
	notStarted.Status.PodIP = ""
	for _, tc := range []struct {
		name string
		r    Report
		want bool
	}{
		{"applies it", Report{Pod: pod("", now, false), Applied: 5}, false},
		{"never asked", Report{Pod: pod("", now, false), Applied: 3}, true},
		{"asked for another size", Report{Pod: pod("4", now, false), Applied: 3}, true},
		{"asked just now", Report{Pod: pod("5", now.Add(-time.Second), false), Applied: 3}, false},
		{"asked a while ago", Report{Pod: pod("5", now.Add(-resync), false), Applied: 3}, true},
		{"unreachable, asked just now", Report{Pod: pod("5", now, false), Err: errors.New("refused")}, false},
		{"unreachable, never asked", Report{Pod: pod("", now, false), Err: errors.New("refused")}, true},
		{"being deleted", Report{Pod: pod("", now, true), Applied: 3}, false},
		{"not started", Report{Pod: notStarted, Err: errors.New("no IP yet")}, false},
	} {
		if got := NeedsNudge(tc.r, 5, now, resync); got != tc.want {
			t.Errorf("%s: NeedsNudge = %v, want %v", tc.name, got, tc.want)
		}
	}
	p := pod("", now, false)
	Nudge(p, 5, now)
	if NeedsNudge(Report{Pod: p, Applied: 3}, 5, now, resync) || p.Annotations[AnnotationExpectedNodes] != "5" {
		t.Errorf("a pod just nudged needs a nudge: %v", p.Annotations)
	}
}

// selfSignedCert writes a self-signed certificate for 127.0.0.1 and its key,
// and returns their paths.
func selfSignedCert(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "chat"},
		DNSNames:     []string{"chat.chat.svc"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
