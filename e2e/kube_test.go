//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
	"k8s.io/client-go/util/retry"
	"k8s.io/streaming/pkg/httpstream"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	chatv1alpha1 "github.com/ringchat/ringchat/api/v1alpha1"
	"github.com/ringchat/ringchat/chatd/admin"
	"github.com/ringchat/ringchat/controllers/chatdconfig"
)

// pollInterval is how often waits poll the API server and the pods.
const pollInterval = 2 * time.Second

// waitFor polls check every pollInterval until it reports done, and returns
// an error naming what and the last observation if within passes first.
// check describes what it saw, so that a timeout says how far things got;
// its errors (an API hiccup, a pod that just went away) are observations
// too, since what is awaited may make them go away. Each check runs to its
// end (up to a minute) even when within passes meanwhile, so that the last
// observation is a real one rather than a cancelled call.
func waitFor(ctx context.Context, within time.Duration, what string, check func(context.Context) (observed string, done bool)) error {
	start := time.Now()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		callCtx, cancel := context.WithTimeout(ctx, time.Minute)
		observed, done := check(callCtx)
		cancel()
		if done {
			return nil
		}
		select {
		case <-deadline.C:
			return fmt.Errorf("%s: not done after %v; last observed: %s", what, time.Since(start).Round(time.Second), observed)
		case <-ctx.Done():
			return fmt.Errorf("%s: %w; last observed: %s", what, ctx.Err(), observed)
		case <-tick.C:
		}
	}
}

// clusterPods lists the chatd pods of cc, by its selector labels, sorted by
// StatefulSet ordinal (see comparePodNames).
func (e *environment) clusterPods(ctx context.Context, cc *chatv1alpha1.ChatCluster) ([]corev1.Pod, error) {
	var list corev1.PodList
	if err := e.client.List(ctx, &list, client.InNamespace(e.namespace), client.MatchingLabels(cc.SelectorLabels())); err != nil {
		return nil, fmt.Errorf("listing pods of %s: %w", cc.Name, err)
	}
	slices.SortFunc(list.Items, func(a, b corev1.Pod) int { return comparePodNames(a.Name, b.Name) })
	return list.Items, nil
}

// comparePodNames orders StatefulSet pod names by ordinal (chat-2 before
// chat-10), falling back to the names.
func comparePodNames(a, b string) int {
	ai, aerr := strconv.Atoi(a[strings.LastIndexByte(a, '-')+1:])
	bi, berr := strconv.Atoi(b[strings.LastIndexByte(b, '-')+1:])
	if aerr == nil && berr == nil && ai != bi {
		return ai - bi
	}
	return strings.Compare(a, b)
}

// podReady reports whether pod runs, is not being deleted, and has its
// Ready condition.
func podReady(p *corev1.Pod) bool {
	if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func podNames(pods []corev1.Pod) []string {
	names := make([]string, len(pods))
	for i, p := range pods {
		names[i] = p.Name
	}
	return names
}

// describePods is one line per pod for failure messages: phase, readiness,
// image, restarts, deletion.
func describePods(pods []corev1.Pod) string {
	var b strings.Builder
	for _, p := range pods {
		fmt.Fprintf(&b, "\n  %s: phase=%s ready=%v node=%s", p.Name, p.Status.Phase, podReady(&p), p.Spec.NodeName)
		for _, c := range p.Spec.Containers {
			fmt.Fprintf(&b, " image=%s", c.Image)
		}
		for _, s := range p.Status.ContainerStatuses {
			fmt.Fprintf(&b, " restarts=%d", s.RestartCount)
			if w := s.State.Waiting; w != nil {
				fmt.Fprintf(&b, " waiting=%s(%s)", w.Reason, w.Message)
			}
		}
		if p.DeletionTimestamp != nil {
			fmt.Fprintf(&b, " terminating-since=%s", p.DeletionTimestamp.Format(time.RFC3339))
		}
		fmt.Fprintf(&b, " config-hash=%s", p.Annotations[chatv1alpha1.AnnotationConfigHash])
	}
	return b.String()
}

// describeStatus summarises a ChatCluster's status for failure messages.
func describeStatus(cc *chatv1alpha1.ChatCluster) string {
	st := cc.Status
	var b strings.Builder
	fmt.Fprintf(&b, "generation=%d observedGeneration=%d spec.replicas=%d replicas=%d ready=%d currentImage=%q configHash=%q",
		cc.Generation, st.ObservedGeneration, cc.DesiredReplicas(), st.Replicas, st.ReadyReplicas, st.CurrentImage, st.ConfigHash)
	if s := st.Storage; s != nil {
		fmt.Fprintf(&b, " storage=%s claims=%d bound=%d", s.Mode, s.Claims, s.BoundClaims)
	}
	for _, c := range st.Conditions {
		fmt.Fprintf(&b, "; %s=%s/%s (gen %d): %s", c.Type, c.Status, c.Reason, c.ObservedGeneration, c.Message)
	}
	return b.String()
}

// dumpOnFailure logs, when the test has failed, the ChatCluster's status,
// its StatefulSet's status and its pods: what helps read a failure next to
// the pod logs and events that the scripts collect. Register it after the
// cleanups that restore the cluster, so that it runs before them.
func dumpOnFailure(t *testing.T) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cc, err := env.chatCluster(ctx)
		if err != nil {
			t.Logf("state at failure: %v", err)
			return
		}
		t.Logf("state at failure: ChatCluster %s", describeStatus(cc))
		if sts, err := env.statefulSet(ctx, cc); err != nil {
			t.Logf("state at failure: %v", err)
		} else {
			s := sts.Status
			t.Logf("state at failure: StatefulSet %s spec.replicas=%d generation=%d observed=%d replicas=%d ready=%d updated=%d current=%s update=%s",
				sts.Name, ptr.Deref(sts.Spec.Replicas, 0), sts.Generation, s.ObservedGeneration, s.Replicas, s.ReadyReplicas, s.UpdatedReplicas, s.CurrentRevision, s.UpdateRevision)
		}
		pods, err := env.clusterPods(ctx, cc)
		if err != nil {
			t.Logf("state at failure: %v", err)
			return
		}
		t.Logf("state at failure: pods:%s", describePods(pods))
		dumpPods(t, ctx, cc, pods)
	})
}

// dumpPods saves, for every pod, what its admin listener says of its
// view, its rooms (a room that is claimed or settling says what it waits
// for) and every goroutine's stack, into $E2E_ARTIFACTS: a node that
// holds requests without logging why is diagnosed from these.
func dumpPods(t *testing.T, ctx context.Context, cc *chatv1alpha1.ChatCluster, pods []corev1.Pod) {
	dir := os.Getenv("E2E_ARTIFACTS")
	if dir == "" {
		return
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Logf("state at failure: %v", err)
		return
	}
	token, err := env.adminToken(ctx, cc)
	if err != nil {
		t.Logf("state at failure: %v", err)
		return
	}
	docs := map[string]string{
		"/admin/cluster":                 "cluster.json",
		"/admin/rooms":                   "rooms.json",
		"/debug/pprof/goroutine?debug=2": "goroutines.txt",
	}
	for i := range pods {
		port, err := adminPort(&pods[i])
		if err != nil {
			t.Logf("state at failure: %v", err)
			continue
		}
		for path, file := range docs {
			callCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
			code, body, err := env.adminGet(callCtx, pods[i].Name, port, token, path)
			cancel()
			if err != nil {
				t.Logf("state at failure: %s %s: %v", pods[i].Name, path, err)
				continue
			}
			name := filepath.Join(dir, fmt.Sprintf("%s-%s-%s", strings.ReplaceAll(t.Name(), "/", "_"), pods[i].Name, file))
			if err := os.WriteFile(name, body, 0o644); err != nil {
				t.Logf("state at failure: %v", err)
				continue
			}
			t.Logf("state at failure: %s %s (%d) saved to %s", pods[i].Name, path, code, name)
		}
	}
}

// httpTarget is the client Service's target port: chatd's HTTP port
// (WebSocket /ws, the page, the probes), by name or number, as the operator
// declares it.
func (e *environment) httpTarget(ctx context.Context, cc *chatv1alpha1.ChatCluster) (intstr.IntOrString, error) {
	svc, err := e.clientService(ctx, cc)
	if err != nil {
		return intstr.IntOrString{}, err
	}
	if len(svc.Spec.Ports) == 0 {
		return intstr.IntOrString{}, fmt.Errorf("Service %s has no ports", svc.Name)
	}
	return svc.Spec.Ports[0].TargetPort, nil
}

// resolvePort is the number of target in pod: a named port is looked up
// in the pod's container ports.
func resolvePort(target intstr.IntOrString, pod *corev1.Pod) (int, error) {
	if target.Type == intstr.Int {
		return target.IntValue(), nil
	}
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if p.Name == target.StrVal {
				return int(p.ContainerPort), nil
			}
		}
	}
	return 0, fmt.Errorf("pod %s has no container port named %q (the client Service's target port)", pod.Name, target.StrVal)
}

// chatdImage is the image of the pod's container that serves the HTTP
// port, i.e. chatd's.
func chatdImage(pod *corev1.Pod, port int) string {
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if int(p.ContainerPort) == port {
				return c.Image
			}
		}
	}
	return ""
}

// clientService is the Service clients connect to: the one in the
// namespace that cc controls and that is not headless.
func (e *environment) clientService(ctx context.Context, cc *chatv1alpha1.ChatCluster) (*corev1.Service, error) {
	var list corev1.ServiceList
	if err := e.client.List(ctx, &list, client.InNamespace(e.namespace)); err != nil {
		return nil, fmt.Errorf("listing Services: %w", err)
	}
	for i := range list.Items {
		svc := &list.Items[i]
		if metav1.IsControlledBy(svc, cc) && svc.Spec.ClusterIP != corev1.ClusterIPNone {
			return svc, nil
		}
	}
	return nil, fmt.Errorf("no client Service in %s is controlled by ChatCluster %s", e.namespace, cc.Name)
}

// nodePortURLs are the WebSocket URLs of the client Service's NodePort on
// every ready node's InternalIP. With kind the nodes are Docker containers
// whose IPs the host reaches, and kube-proxy on any node forwards to a
// ready chatd pod: clients that reconnect through these URLs land on pods
// that are up, whichever pods come and go.
func (e *environment) nodePortURLs(ctx context.Context) ([]string, error) {
	cc, err := e.chatCluster(ctx)
	if err != nil {
		return nil, err
	}
	svc, err := e.clientService(ctx, cc)
	if err != nil {
		return nil, err
	}
	if svc.Spec.Type != corev1.ServiceTypeNodePort && svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		return nil, fmt.Errorf("Service %s is of type %s; the suite needs spec.service.type NodePort", svc.Name, svc.Spec.Type)
	}
	if len(svc.Spec.Ports) == 0 || svc.Spec.Ports[0].NodePort == 0 {
		return nil, fmt.Errorf("Service %s has no node port yet", svc.Name)
	}
	port := strconv.Itoa(int(svc.Spec.Ports[0].NodePort))
	var nodes corev1.NodeList
	if err := e.client.List(ctx, &nodes); err != nil {
		return nil, fmt.Errorf("listing nodes: %w", err)
	}
	var urls []string
	for _, n := range nodes.Items {
		if !nodeReady(&n) {
			continue
		}
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				urls = append(urls, "ws://"+net.JoinHostPort(a.Address, port)+"/ws")
				break
			}
		}
	}
	if len(urls) == 0 {
		return nil, errors.New("no ready node has an InternalIP")
	}
	return urls, nil
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// forward is a port-forward from a loopback port of the test host to a
// pod's port, through the API server and the kubelet (what kubectl
// port-forward does). It ends when its pod goes away, or on Close.
type forward struct {
	// Addr is 127.0.0.1:port on the test host.
	Addr string
	stop context.CancelFunc
	done chan error
}

// forwardCloseTimeout bounds Close's wait for the forwarder to end.
const forwardCloseTimeout = 10 * time.Second

// Close ends the port-forward and waits for it, at most
// forwardCloseTimeout: client-go's ForwardPorts waits for its streams, and
// a stream to a pod deleted under it can stay open (seen once when every
// pod was deleted at once: the settle wait hung in Close past its own
// deadline). The forwarder's goroutine is then left to end on its own.
func (f *forward) Close() {
	f.stop()
	select {
	case <-f.done:
	case <-time.After(forwardCloseTimeout):
	}
}

// portForward forwards an ephemeral loopback port to port of pod. Like
// kubectl port-forward it tunnels SPDY over a WebSocket, and falls back to
// a plain SPDY upgrade when the API server refuses the WebSocket.
func (e *environment) portForward(ctx context.Context, pod string, port int) (*forward, error) {
	url := e.clientset.CoreV1().RESTClient().Post().
		Namespace(e.namespace).Resource("pods").Name(pod).SubResource("portforward").URL()
	transport, upgrader, err := spdy.RoundTripperFor(e.rest)
	if err != nil {
		return nil, fmt.Errorf("port-forward to %s: %w", pod, err)
	}
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, url)
	tunnel, err := portforward.NewSPDYOverWebsocketDialer(url, e.rest)
	if err != nil {
		return nil, fmt.Errorf("port-forward to %s: %w", pod, err)
	}
	dialer = portforward.NewFallbackDialer(tunnel, dialer, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	})

	fwdCtx, stop := context.WithCancel(context.Background())
	ready := make(chan struct{})
	pf, err := portforward.NewOnAddressesWithContext(fwdCtx, dialer, []string{"127.0.0.1"},
		[]string{"0:" + strconv.Itoa(port)}, ready, io.Discard, io.Discard)
	if err != nil {
		stop()
		return nil, fmt.Errorf("port-forward to %s:%d: %w", pod, port, err)
	}
	f := &forward{stop: stop, done: make(chan error, 1)}
	go func() { f.done <- pf.ForwardPorts() }()
	select {
	case <-ready:
	case err := <-f.done:
		stop()
		return nil, fmt.Errorf("port-forward to %s:%d: %w", pod, port, err)
	case <-ctx.Done():
		stop() // ForwardPorts returns once its dial does; done is buffered
		return nil, fmt.Errorf("port-forward to %s:%d: %w", pod, port, ctx.Err())
	}
	ports, err := pf.GetPorts()
	if err != nil || len(ports) != 1 {
		f.Close()
		return nil, fmt.Errorf("port-forward to %s:%d: local port unknown: %v", pod, port, err)
	}
	f.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(int(ports[0].Local)))
	return f, nil
}

// forwardHTTP opens a port-forward to pod's HTTP port.
func (e *environment) forwardHTTP(ctx context.Context, cc *chatv1alpha1.ChatCluster, pod *corev1.Pod) (*forward, error) {
	target, err := e.httpTarget(ctx, cc)
	if err != nil {
		return nil, err
	}
	port, err := resolvePort(target, pod)
	if err != nil {
		return nil, err
	}
	return e.portForward(ctx, pod.Name, port)
}

// adminToken is the admin API's bearer token of cc: the first line of the
// Secret the operator generates (<cc>-admin, key token).
func (e *environment) adminToken(ctx context.Context, cc *chatv1alpha1.ChatCluster) (string, error) {
	var sec corev1.Secret
	if err := e.client.Get(ctx, client.ObjectKey{Namespace: cc.Namespace, Name: cc.AdminSecretName()}, &sec); err != nil {
		return "", fmt.Errorf("the admin token Secret: %w", err)
	}
	tok, _, _ := strings.Cut(strings.TrimSpace(string(sec.Data[chatv1alpha1.DefaultAdminTokenKey])), "\n")
	if tok == "" {
		return "", fmt.Errorf("Secret %s holds no admin token", sec.Name)
	}
	return tok, nil
}

// adminPort is pod's admin listener port (its container port "admin").
func adminPort(pod *corev1.Pod) (int, error) {
	return resolvePort(intstr.FromString(chatdconfig.AdminPortName), pod)
}

// adminGet fetches path from pod's admin listener (port), through a
// port-forward opened for the call, with the admin token when token is not
// empty; it returns the status code and the body.
func (e *environment) adminGet(ctx context.Context, pod string, port int, token, path string) (int, []byte, error) {
	f, err := e.portForward(ctx, pod, port)
	if err != nil {
		return 0, nil, err
	}
	defer f.Close()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+f.Addr+path, nil)
	if err != nil {
		return 0, nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Close = true // the forward ends with this call: keep no idle connection to it
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("GET %s on %s: %w", path, pod, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	return resp.StatusCode, body, err
}

// adminStatus fetches GET /admin/cluster from pod's admin listener with the
// admin token: the pod's own view of the members and of its rooms.
func (e *environment) adminStatus(ctx context.Context, pod string, port int, token string) (admin.ClusterStatus, error) {
	var st admin.ClusterStatus
	code, body, err := e.adminGet(ctx, pod, port, token, "/admin/cluster")
	if err != nil {
		return st, err
	}
	if code != http.StatusOK {
		return st, fmt.Errorf("GET /admin/cluster on %s: %d %s", pod, code, body)
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return st, fmt.Errorf("decoding /admin/cluster of %s: %w", pod, err)
	}
	return st, nil
}

// adminStatuses fetches every pod's /admin/cluster, in the pods' order.
func (e *environment) adminStatuses(ctx context.Context, cc *chatv1alpha1.ChatCluster, pods []corev1.Pod) ([]admin.ClusterStatus, error) {
	token, err := e.adminToken(ctx, cc)
	if err != nil {
		return nil, err
	}
	out := make([]admin.ClusterStatus, len(pods))
	for i := range pods {
		port, err := adminPort(&pods[i])
		if err != nil {
			return nil, err
		}
		if out[i], err = e.adminStatus(ctx, pods[i].Name, port, token); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// membersConverged checks that every pod, asked through its own
// port-forward, is itself and sees exactly the pods as active members.
func (e *environment) membersConverged(ctx context.Context, cc *chatv1alpha1.ChatCluster, pods []corev1.Pod) (string, bool) {
	want := podNames(pods)
	slices.Sort(want)
	statuses, err := e.adminStatuses(ctx, cc, pods)
	if err != nil {
		return err.Error(), false
	}
	for i, st := range statuses {
		if st.Self != pods[i].Name || !slices.Equal(st.Active, want) {
			return fmt.Sprintf("%s (self %q) sees active %v, want %v", pods[i].Name, st.Self, st.Active, want), false
		}
		// The size reaches running pods through the kubelet's update of
		// the mounted ConfigMap, not through a restart.
		if st.ExpectedNodes != len(pods) {
			return fmt.Sprintf("%s applies an expected cluster size of %d, want %d", pods[i].Name, st.ExpectedNodes, len(pods)), false
		}
	}
	return fmt.Sprintf("every pod sees active %v and applies an expected size of %d", want, len(pods)), true
}

// expectation is the state a change must end in.
type expectation struct {
	replicas int32
	image    string
}

// settled checks that the cluster has finished every change and looks as
// expected, through the operator's status and through the objects it
// describes, so that a status that claims too much is caught:
//   - the ChatCluster's status describes its current generation (and so do
//     its conditions): Available=True, Progressing=False, Degraded=False,
//     replicas and readyReplicas as wanted, currentImage the wanted image,
//     configHash the one on the StatefulSet's pod template;
//   - exactly the wanted number of pods, each ready, not terminating,
//     running the wanted image with that config hash, on the StatefulSet's
//     update revision;
//   - every pod's /admin/cluster lists exactly these pods as active.
func (e *environment) settled(ctx context.Context, want expectation) (string, bool) {
	cc, err := e.chatCluster(ctx)
	if err != nil {
		return err.Error(), false
	}
	st := cc.Status
	if msg, ok := statusSettled(cc, want); !ok {
		return msg + " [" + describeStatus(cc) + "]", false
	}
	sts, err := e.statefulSet(ctx, cc)
	if err != nil {
		return err.Error(), false
	}
	if h := sts.Spec.Template.Annotations[chatv1alpha1.AnnotationConfigHash]; h != st.ConfigHash {
		return fmt.Sprintf("status.configHash %q, StatefulSet template has %q", st.ConfigHash, h), false
	}
	pods, err := e.clusterPods(ctx, cc)
	if err != nil {
		return err.Error(), false
	}
	if int32(len(pods)) != want.replicas {
		return fmt.Sprintf("%d pods, want %d:%s", len(pods), want.replicas, describePods(pods)), false
	}
	target, err := e.httpTarget(ctx, cc)
	if err != nil {
		return err.Error(), false
	}
	for i := range pods {
		p := &pods[i]
		port, err := resolvePort(target, p)
		if err != nil {
			return err.Error(), false
		}
		switch {
		case !podReady(p):
			return fmt.Sprintf("pod %s not ready:%s", p.Name, describePods(pods)), false
		case chatdImage(p, port) != want.image:
			return fmt.Sprintf("pod %s runs %q, want %q", p.Name, chatdImage(p, port), want.image), false
		case p.Annotations[chatv1alpha1.AnnotationConfigHash] != st.ConfigHash:
			return fmt.Sprintf("pod %s has config hash %q, status %q", p.Name, p.Annotations[chatv1alpha1.AnnotationConfigHash], st.ConfigHash), false
		case p.Labels[appsv1.ControllerRevisionHashLabelKey] != sts.Status.UpdateRevision:
			return fmt.Sprintf("pod %s is at revision %q, StatefulSet at %q", p.Name, p.Labels[appsv1.ControllerRevisionHashLabelKey], sts.Status.UpdateRevision), false
		}
	}
	return e.membersConverged(ctx, cc, pods)
}

// statusSettled checks the ChatCluster's status alone against want.
func statusSettled(cc *chatv1alpha1.ChatCluster, want expectation) (string, bool) {
	st := cc.Status
	if st.ObservedGeneration != cc.Generation {
		return fmt.Sprintf("status describes generation %d, the object is at %d", st.ObservedGeneration, cc.Generation), false
	}
	for _, c := range []struct {
		typ    string
		status metav1.ConditionStatus
	}{
		{chatv1alpha1.ConditionAvailable, metav1.ConditionTrue},
		{chatv1alpha1.ConditionProgressing, metav1.ConditionFalse},
		{chatv1alpha1.ConditionDegraded, metav1.ConditionFalse},
	} {
		got := apimeta.FindStatusCondition(st.Conditions, c.typ)
		switch {
		case got == nil:
			return "no " + c.typ + " condition", false
		case got.Status != c.status:
			return fmt.Sprintf("%s=%s (%s: %s), want %s", c.typ, got.Status, got.Reason, got.Message, c.status), false
		case got.ObservedGeneration != cc.Generation:
			return fmt.Sprintf("%s describes generation %d, the object is at %d", c.typ, got.ObservedGeneration, cc.Generation), false
		}
	}
	switch {
	case cc.DesiredReplicas() != want.replicas:
		return fmt.Sprintf("spec.replicas is %d, want %d", cc.DesiredReplicas(), want.replicas), false
	case st.Replicas != want.replicas || st.ReadyReplicas != want.replicas:
		return fmt.Sprintf("status replicas %d, ready %d, want %d", st.Replicas, st.ReadyReplicas, want.replicas), false
	case st.CurrentImage != want.image:
		return fmt.Sprintf("status.currentImage %q, want %q", st.CurrentImage, want.image), false
	}
	return "", true
}

// waitSettled waits until the cluster is settled as want says (see
// settled), for at most within.
func (e *environment) waitSettled(ctx context.Context, within time.Duration, want expectation) error {
	what := fmt.Sprintf("cluster settled at %d ready replicas of %s", want.replicas, want.image)
	return waitFor(ctx, within, what, func(ctx context.Context) (string, bool) { return e.settled(ctx, want) })
}

// updateSpec changes the ChatCluster's spec with mutate, sent as a JSON
// merge patch of what changed (no conflict with the operator, which writes
// only the status).
func (e *environment) updateSpec(ctx context.Context, mutate func(*chatv1alpha1.ChatClusterSpec)) error {
	cc, err := e.chatCluster(ctx)
	if err != nil {
		return err
	}
	orig := cc.DeepCopy()
	mutate(&cc.Spec)
	if err := e.client.Patch(ctx, cc, client.MergeFrom(orig)); err != nil {
		return fmt.Errorf("patching ChatCluster %s/%s: %w", e.namespace, e.name, err)
	}
	return nil
}

// annotate sets (or, with an empty value, removes) one annotation of the
// ChatCluster.
func (e *environment) annotate(ctx context.Context, key, value string) error {
	cc, err := e.chatCluster(ctx)
	if err != nil {
		return err
	}
	orig := cc.DeepCopy()
	if cc.Annotations == nil {
		cc.Annotations = map[string]string{}
	}
	if value == "" {
		delete(cc.Annotations, key)
	} else {
		cc.Annotations[key] = value
	}
	if err := e.client.Patch(ctx, cc, client.MergeFrom(orig)); err != nil {
		return fmt.Errorf("annotating ChatCluster %s/%s: %w", e.namespace, e.name, err)
	}
	return nil
}

// scale sets the ChatCluster's replicas through its scale subresource, as
// kubectl scale and a HorizontalPodAutoscaler do.
func (e *environment) scale(ctx context.Context, replicas int32) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cc := &chatv1alpha1.ChatCluster{ObjectMeta: metav1.ObjectMeta{Namespace: e.namespace, Name: e.name}}
		sc := &autoscalingv1.Scale{}
		if err := e.client.SubResource("scale").Get(ctx, cc, sc); err != nil {
			return fmt.Errorf("getting the scale of %s: %w", e.name, err)
		}
		sc.Spec.Replicas = replicas
		if err := e.client.SubResource("scale").Update(ctx, cc, client.WithSubResourceBody(sc)); err != nil {
			return fmt.Errorf("scaling %s to %d: %w", e.name, replicas, err)
		}
		return nil
	})
}

// originalExpectation is the state the suite found the cluster in, and
// leaves it in.
func originalExpectation() expectation {
	cc := chatv1alpha1.ChatCluster{Spec: env.original}
	return expectation{replicas: cc.DesiredReplicas(), image: cc.ImageOrDefault()}
}

// restoreOnCleanup registers a cleanup that puts back the spec fields the
// tests change (replicas, image, historySize, serverAPI) as the suite found them, and
// waits for the cluster to settle: a test that fails half-way must not hand
// the next one a cluster in another shape. When the test passed, the spec
// is already back and the wait is one poll.
func restoreOnCleanup(t *testing.T) {
	t.Cleanup(func() {
		ctx := context.Background()
		orig := env.original
		err := env.updateSpec(ctx, func(s *chatv1alpha1.ChatClusterSpec) {
			s.Replicas = orig.Replicas
			s.Image = orig.Image
			s.HistorySize = orig.HistorySize
			s.ServerAPI = orig.ServerAPI
		})
		if err != nil {
			t.Errorf("restoring the original spec: %v", err)
			return
		}
		if err := env.waitSettled(ctx, rolloutTimeout, originalExpectation()); err != nil {
			t.Errorf("after restoring the original spec: %v", err)
		}
	})
}

// waitRoomOwner finds the pod that owns room: the one pod whose
// /admin/cluster lists it in owned_rooms, with every pod that holds the
// room locally naming that pod as its owner (local_rooms). It waits up to a
// minute for the pods to agree, as they do once the room has traffic and
// their views have settled.
func (e *environment) waitRoomOwner(ctx context.Context, room string) (*corev1.Pod, error) {
	var owner *corev1.Pod
	err := waitFor(ctx, time.Minute, "the owner of "+room, func(ctx context.Context) (string, bool) {
		cc, err := e.chatCluster(ctx)
		if err != nil {
			return err.Error(), false
		}
		pods, err := e.clusterPods(ctx, cc)
		if err != nil {
			return err.Error(), false
		}
		statuses, err := e.adminStatuses(ctx, cc, pods)
		if err != nil {
			return err.Error(), false
		}
		var owners []string
		for i, st := range statuses {
			if slices.Contains(st.OwnedRooms, room) {
				owners = append(owners, pods[i].Name)
				owner = &pods[i]
			}
		}
		if len(owners) != 1 {
			return fmt.Sprintf("pods listing %s in owned_rooms: %v", room, owners), false
		}
		for i, st := range statuses {
			for _, r := range st.LocalRooms {
				if r.Room == room && r.Owner != owner.Name {
					return fmt.Sprintf("%s owns %s, but %s says %s does", owner.Name, room, pods[i].Name, r.Owner), false
				}
			}
		}
		return owner.Name, true
	})
	if err != nil {
		return nil, err
	}
	return owner, nil
}
