// Package clustersize observes which cluster size each chatd pod applies,
// so that the operator's scaling steps follow what the pods do instead of a
// fixed wait.
//
// chatd reads its cluster size from a file (--expected-nodes-file), the
// ConfigMap key the kubelet projects into every pod, polls it every 2 s and
// exports the size it applies as the gauge chatd_expected_nodes on GET
// /metrics. HTTPProber reads that gauge from each pod, directly at the pod's
// IP and admin port (chatd's admin listener; the chatd pods' NetworkPolicy
// lets the operator's namespace in): the operator needs no permission
// beyond reading pods for it (the API server's pod proxy would need
// pods/proxy, which reaches any port of any pod), and no admin token
// (/metrics is open on the admin listener unless --metrics-require-token,
// which the operator does not set, unlike /admin/cluster).
//
// The kubelet rewrites a mounted ConfigMap only when it syncs the pod —
// about once a minute, or at once when the pod object changes. So the
// operator asks each pod that does not apply the new size yet to resync by
// writing two annotations on it (AnnotationExpectedNodes and
// AnnotationRequestedAt; see Nudge), and writes them again when a pod is
// still behind after a while (its kubelet may have synced before its copy of
// the ConfigMap caught up).
package clustersize

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"

	"github.com/ringchat/ringchat/controllers/chatdconfig"
)

// MetricName is chatd's gauge of the cluster size it applies.
const MetricName = "chatd_expected_nodes"

// maxMetricsBytes bounds what is read of a pod's /metrics (chatd's is
// about 16 KiB).
const maxMetricsBytes = 4 << 20

// Prober asks one chatd pod which cluster size it applies.
type Prober interface {
	Applied(ctx context.Context, pod *corev1.Pod) (int32, error)
}

// HTTPProber reads chatd_expected_nodes from GET /metrics on a pod's admin
// port (its chatd container's port named "admin", or "http" for a pod made
// before chatd had an admin listener), at the pod's IP. It speaks
// HTTPS when the container's readiness probe does (spec.tls), without
// verifying the certificate, as the kubelet's probes do: the certificate
// names the Services, not pod IPs, and what is read is one number that only
// lets a step start sooner than --cluster-size-propagation would.
type HTTPProber struct {
	client *http.Client
	// timeout bounds one request.
	timeout time.Duration
}

// NewHTTPProber returns an HTTPProber whose requests give up after timeout.
func NewHTTPProber(timeout time.Duration) *HTTPProber {
	t := http.DefaultTransport.(*http.Transport).Clone()
	// Pod IPs are reached directly, never through a proxy; the
	// certificate is not verified (see HTTPProber).
	t.Proxy = nil
	t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // see HTTPProber
	t.MaxIdleConnsPerHost = 1
	t.IdleConnTimeout = 30 * time.Second
	return &HTTPProber{client: &http.Client{Transport: t}, timeout: timeout}
}

// Close drops the prober's idle connections.
func (p *HTTPProber) Close() { p.client.CloseIdleConnections() }

// Applied returns the cluster size pod's chatd applies.
func (p *HTTPProber) Applied(ctx context.Context, pod *corev1.Pod) (int32, error) {
	u, err := MetricsURL(pod)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, fmt.Errorf("pod %s: %w", pod.Name, err)
	}
	req.Header.Set("Accept", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
	resp, err := p.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("pod %s: %w", pod.Name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxMetricsBytes))
		return 0, fmt.Errorf("pod %s: GET %s: %s", pod.Name, u, resp.Status)
	}
	v, err := ParseExpectedNodes(io.LimitReader(resp.Body, maxMetricsBytes))
	if err != nil {
		return 0, fmt.Errorf("pod %s: %s: %w", pod.Name, u, err)
	}
	return v, nil
}

// MetricsURL is the URL of pod's chatd /metrics: the pod's IP and its chatd
// container's admin port (else its HTTP port), with the scheme of that
// container's readiness probe (chatd serves its admin listener with the
// client certificate when it has one).
func MetricsURL(pod *corev1.Pod) (string, error) {
	if pod.Status.PodIP == "" {
		return "", fmt.Errorf("pod %s has no IP yet", pod.Name)
	}
	var c *corev1.Container
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == chatdconfig.ContainerName {
			c = &pod.Spec.Containers[i]
		}
	}
	if c == nil {
		return "", fmt.Errorf("pod %s has no container %q", pod.Name, chatdconfig.ContainerName)
	}
	// The admin listener's port; a pod of an earlier template, made
	// before chatd had one, serves /metrics on its HTTP port.
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	port := ports[chatdconfig.AdminPortName]
	if port == 0 {
		port = ports[chatdconfig.HTTPPortName]
	}
	if port == 0 {
		return "", fmt.Errorf("pod %s: container %s has no port named %q or %q", pod.Name, c.Name, chatdconfig.AdminPortName, chatdconfig.HTTPPortName)
	}
	scheme := "http"
	if r := c.ReadinessProbe; r != nil && r.HTTPGet != nil && r.HTTPGet.Scheme == corev1.URISchemeHTTPS {
		scheme = "https"
	}
	return scheme + "://" + net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(int(port))) + "/metrics", nil
}

// ParseExpectedNodes reads chatd_expected_nodes from Prometheus text
// exposition: one gauge, a whole number from 0 up.
func ParseExpectedNodes(r io.Reader) (int32, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(r)
	if err != nil {
		return 0, fmt.Errorf("reading the metrics: %w", err)
	}
	f, ok := families[MetricName]
	if !ok {
		return 0, fmt.Errorf("no %s gauge (a chatd without --expected-nodes-file support?)", MetricName)
	}
	if len(f.GetMetric()) != 1 || f.GetMetric()[0].GetGauge() == nil {
		return 0, fmt.Errorf("%s is not a single gauge", MetricName)
	}
	v := f.GetMetric()[0].GetGauge().GetValue()
	if v < 0 || v > math.MaxInt32 || v != math.Trunc(v) {
		return 0, fmt.Errorf("%s is %v, not a cluster size", MetricName, v)
	}
	return int32(v), nil
}

// Report is what one pod said: the size it applies, or why it could not be
// asked.
type Report struct {
	Pod     *corev1.Pod
	Applied int32
	Err     error
}

// Applies reports whether the pod said it applies size.
func (r Report) Applies(size int32) bool { return r.Err == nil && r.Applied == size }

// Observe asks every pod at once and returns their reports in the pods'
// order; it returns when every request has.
func Observe(ctx context.Context, p Prober, pods []corev1.Pod) []Report {
	out := make([]Report, len(pods))
	var wg sync.WaitGroup
	for i := range pods {
		out[i].Pod = &pods[i]
		wg.Go(func() { out[i].Applied, out[i].Err = p.Applied(ctx, &pods[i]) })
	}
	wg.Wait()
	return out
}

// AllApply reports whether every report says size (true for none: a pod
// that does not exist applies nothing, and one created later starts with
// the ConfigMap's current size).
func AllApply(reports []Report, size int32) bool {
	for _, r := range reports {
		if !r.Applies(size) {
			return false
		}
	}
	return true
}

// Behind describes the pods that do not apply size, for a status message:
// "chat-2 applies 3; chat-4: no IP yet".
func Behind(reports []Report, size int32) string {
	var parts []string
	for _, r := range reports {
		switch {
		case r.Err != nil:
			var msg string
			if errors.Is(r.Err, context.DeadlineExceeded) {
				msg = "no answer in time"
			} else {
				msg = strings.TrimPrefix(r.Err.Error(), "pod "+r.Pod.Name+": ")
			}
			parts = append(parts, r.Pod.Name+": "+msg)
		case r.Applied != size:
			parts = append(parts, fmt.Sprintf("%s applies %d", r.Pod.Name, r.Applied))
		}
	}
	return strings.Join(parts, "; ")
}
