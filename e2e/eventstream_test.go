//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	chatv1alpha1 "github.com/ringchat/ringchat/api/v1alpha1"
	"github.com/ringchat/ringchat/chatd/api"
)

// sinkPort is where the backend pod's `chatctl sink` listens.
const sinkPort = 8090

// TestEventStreamToBackendPod: a backend pod (the chatctl image running
// `chatctl sink`, behind a Service) is the event stream's target of a
// second, two-pod ChatCluster whose spec.hooks.eventStream names it, signed
// with spec.hooks.signingSecretRef. Through the server API the test
// publishes messages and deletes one, and a backend pod (`chatctl ban`,
// the API key Secret mounted) bans a user; the sink receives all of them,
// signed, each room in order: the messages and the deletion in the room,
// the ban as an entry of #moderation.
func TestEventStreamToBackendPod(t *testing.T) {
	dumpOnFailure(t)
	if env.chatctl == "" {
		t.Fatal("E2E_CHATCTL_IMAGE is not set (hack/e2e.sh sets it to the chatctl image it loads)")
	}
	ctx := context.Background()
	orig, err := env.chatCluster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	name := uniqueName("es")
	sinkName := name + "-sink"
	var secretBytes [24]byte
	_, _ = rand.Read(secretBytes[:])
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: env.namespace, Name: name + "-hooks"},
		StringData: map[string]string{chatv1alpha1.DefaultHookSecretKey: hex.EncodeToString(secretBytes[:])},
	}
	labels := map[string]string{"app.kubernetes.io/name": "event-sink", "app.kubernetes.io/instance": sinkName}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: env.namespace, Name: sinkName, Labels: labels},
		Spec: corev1.PodSpec{
			AutomountServiceAccountToken: ptr.To(false),
			EnableServiceLinks:           ptr.To(false),
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To[int64](65532), RunAsGroup: ptr.To[int64](65532),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Containers: []corev1.Container{{
				Name:            "sink",
				Image:           env.chatctl,
				ImagePullPolicy: corev1.PullNever,
				Args:            []string{"sink", "--json", "--listen", fmt.Sprintf("0.0.0.0:%d", sinkPort), "--secret-file", "/etc/sink/" + chatv1alpha1.DefaultHookSecretKey},
				Ports:           []corev1.ContainerPort{{Name: "events", ContainerPort: sinkPort}},
				VolumeMounts:    []corev1.VolumeMount{{Name: "secret", MountPath: "/etc/sink", ReadOnly: true}},
				SecurityContext: &corev1.SecurityContext{
					AllowPrivilegeEscalation: ptr.To(false), ReadOnlyRootFilesystem: ptr.To(true),
					Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				},
			}},
			Volumes: []corev1.Volume{{Name: "secret", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: secret.Name}}}},
		},
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: env.namespace, Name: sinkName},
		Spec:       corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Name: "events", Port: sinkPort, TargetPort: intstr.FromString("events")}}},
	}
	cc := &chatv1alpha1.ChatCluster{
		ObjectMeta: metav1.ObjectMeta{Namespace: env.namespace, Name: name},
		Spec: chatv1alpha1.ChatClusterSpec{
			Replicas:          ptr.To[int32](2),
			ReplicationFactor: 2,
			Image:             orig.Spec.Image,
			ImagePullPolicy:   orig.Spec.ImagePullPolicy,
			Auth:              chatv1alpha1.AuthSpec{AllowAnonymous: true},
			Resources:         orig.Spec.Resources,
			ServerAPI:         &chatv1alpha1.ServerAPISpec{Enabled: true},
			Hooks: &chatv1alpha1.HooksSpec{
				SigningSecretRef: &chatv1alpha1.HookSecretKeySelector{Name: secret.Name},
				EventStream: &chatv1alpha1.EventStreamSpec{
					URL:     fmt.Sprintf("http://%s.%s.svc:%d/events", sinkName, env.namespace, sinkPort),
					Timeout: &metav1.Duration{Duration: 2 * time.Second},
				},
			},
		},
	}
	for _, obj := range []client.Object{secret, pod, svc, cc} {
		if err := env.client.Create(ctx, obj); err != nil {
			t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
		}
		t.Cleanup(func() { _ = env.client.Delete(context.Background(), obj) })
	}
	err = waitFor(ctx, rolloutTimeout, "ChatCluster "+cc.Name+" available and the sink running", func(ctx context.Context) (string, bool) {
		var got chatv1alpha1.ChatCluster
		if err := env.client.Get(ctx, client.ObjectKeyFromObject(cc), &got); err != nil {
			return err.Error(), false
		}
		var p corev1.Pod
		if err := env.client.Get(ctx, client.ObjectKeyFromObject(pod), &p); err != nil {
			return err.Error(), false
		}
		if got.Status.ReadyReplicas != 2 || p.Status.Phase != corev1.PodRunning {
			return fmt.Sprintf("status %s, sink %s", describeStatus(&got), p.Status.Phase), false
		}
		return "ready", true
	})
	if err != nil {
		t.Fatal(err)
	}

	var keys corev1.Secret
	if err := env.client.Get(ctx, client.ObjectKey{Namespace: cc.Namespace, Name: cc.APISecretName()}, &keys); err != nil {
		t.Fatalf("the API key Secret: %v", err)
	}
	key, _, _ := strings.Cut(strings.TrimSpace(string(keys.Data[chatv1alpha1.DefaultAPIKeysKey])), "\n")
	var pods corev1.PodList
	if err := env.client.List(ctx, &pods, client.InNamespace(env.namespace), client.MatchingLabels(cc.SelectorLabels())); err != nil || len(pods.Items) == 0 {
		t.Fatalf("pods of %s: %v", cc.Name, err)
	}
	port, err := adminPort(&pods.Items[0])
	if err != nil {
		t.Fatal(err)
	}
	f, err := env.portForward(ctx, pods.Items[0].Name, port)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	call := func(method, path string, body any, out any) {
		t.Helper()
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		// The rooms are claimed on first use; retry a 503 (a claim under
		// way) for a while. A 4xx ends it, as a failure.
		refused := ""
		err := waitFor(ctx, 2*time.Minute, method+" "+path, func(ctx context.Context) (string, bool) {
			if rd != nil {
				b, _ := json.Marshal(body)
				rd = bytes.NewReader(b)
			}
			req, err := http.NewRequestWithContext(ctx, method, "http://"+f.Addr+path, rd)
			if err != nil {
				return err.Error(), false
			}
			req.Header.Set("Authorization", "Bearer "+key)
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err.Error(), false
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			if resp.StatusCode/100 == 4 {
				refused = fmt.Sprintf("%d %s", resp.StatusCode, b)
				return refused, true
			}
			if resp.StatusCode != http.StatusOK {
				return fmt.Sprintf("%d %s", resp.StatusCode, b), false
			}
			if out != nil {
				if err := json.Unmarshal(b, out); err != nil {
					return err.Error(), false
				}
			}
			return "ok", true
		})
		if err != nil {
			t.Fatal(err)
		}
		if refused != "" {
			t.Fatalf("%s %s refused: %s", method, path, refused)
		}
	}
	room := uniqueName("streamed")
	var seqs []uint64
	for i := 1; i <= 3; i++ {
		var p api.Published
		call(http.MethodPost, "/api/v1/rooms/"+room+"/messages", api.PublishRequest{User: "backend", Text: fmt.Sprint("streamed ", i), IdempotencyKey: fmt.Sprint("es-", i)}, &p)
		seqs = append(seqs, p.Seq)
	}
	var d api.Deleted
	call(http.MethodDelete, fmt.Sprintf("/api/v1/rooms/%s/messages/%d?by=mod", room, seqs[1]), nil, &d)
	// The ban comes from a backend pod: chatctl (the same image) with the
	// API key Secret mounted, calling a chatd pod's admin port over the
	// pod network.
	banned := uniqueName("mallory")
	banner := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: env.namespace, Name: name + "-ban"},
		Spec: corev1.PodSpec{
			RestartPolicy:                corev1.RestartPolicyOnFailure,
			AutomountServiceAccountToken: ptr.To(false),
			EnableServiceLinks:           ptr.To(false),
			SecurityContext:              pod.Spec.SecurityContext,
			Containers: []corev1.Container{{
				Name:            "ban",
				Image:           env.chatctl,
				ImagePullPolicy: corev1.PullNever,
				Args: []string{"ban", "--api-url", fmt.Sprintf("http://%s:%d", pods.Items[0].Status.PodIP, port),
					"--api-key-file", "/etc/api/" + chatv1alpha1.DefaultAPIKeysKey, "--room", room, "--user", banned, "--reason", "spam", "--timeout", "60s"},
				VolumeMounts:    []corev1.VolumeMount{{Name: "keys", MountPath: "/etc/api", ReadOnly: true}},
				SecurityContext: pod.Spec.Containers[0].SecurityContext,
			}},
			Volumes: []corev1.Volume{{Name: "keys", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: cc.APISecretName()}}}},
		},
	}
	if err := env.client.Create(ctx, banner); err != nil {
		t.Fatalf("creating the ban pod: %v", err)
	}
	t.Cleanup(func() { _ = env.client.Delete(context.Background(), banner) })
	err = waitFor(ctx, 2*time.Minute, "the backend pod's chatctl ban succeeding", func(ctx context.Context) (string, bool) {
		var p corev1.Pod
		if err := env.client.Get(ctx, client.ObjectKeyFromObject(banner), &p); err != nil {
			return err.Error(), false
		}
		return string(p.Status.Phase), p.Status.Phase == corev1.PodSucceeded
	})
	if err != nil {
		logs, _ := env.clientset.CoreV1().Pods(env.namespace).GetLogs(banner.Name, &corev1.PodLogOptions{Container: "ban"}).DoRaw(ctx)
		t.Fatalf("%v; its output:\n%s", err, logs)
	}

	// The backend pod prints every event it took, one JSON line each.
	type event struct {
		ID, Type, Room, Epoch, From, Text string
		Seq, Target                       uint64
	}
	disorder := ""
	err = waitFor(ctx, 2*time.Minute, "the backend pod holding the room's entries and the ban", func(ctx context.Context) (string, bool) {
		logs, err := env.clientset.CoreV1().Pods(env.namespace).GetLogs(pod.Name, &corev1.PodLogOptions{Container: "sink"}).DoRaw(ctx)
		if err != nil {
			return err.Error(), false
		}
		var next uint64 = 1
		seen := map[string]bool{}
		sawDeletion, sawBan := false, false
		sc := bufio.NewScanner(bytes.NewReader(logs))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var e event
			if json.Unmarshal(sc.Bytes(), &e) != nil || e.ID == "" {
				continue // a notice
			}
			switch {
			case e.Room == room:
				if seen[e.ID] {
					continue // at least once: a redelivery
				}
				seen[e.ID] = true
				if e.Seq != next {
					disorder = fmt.Sprintf("room %s: event seq %d after %d (out of order)", room, e.Seq, next-1)
					return disorder, true
				}
				next++
				if e.Type == "deleted" && e.Target == seqs[1] && e.From == "mod" {
					sawDeletion = true
				}
			case e.Room == "#moderation" && strings.Contains(e.Text, banned):
				sawBan = true
			}
		}
		if next <= d.DeletionSeq || !sawDeletion || !sawBan {
			return fmt.Sprintf("room entries up to %d of %d, deletion %v, ban %v", next-1, d.DeletionSeq, sawDeletion, sawBan), false
		}
		return "all there", true
	})
	if err != nil {
		t.Fatal(err)
	}
	if disorder != "" {
		t.Fatal(disorder)
	}
	logs, _ := env.clientset.CoreV1().Pods(env.namespace).GetLogs(pod.Name, &corev1.PodLogOptions{Container: "sink"}).DoRaw(ctx)
	if bytes.Contains(logs, []byte("bad_signature")) {
		t.Errorf("the backend pod refused a batch's signature:\n%s", logs)
	}
	t.Logf("the backend pod took %d log lines", bytes.Count(logs, []byte("\n")))
}
