//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	chatv1alpha1 "github.com/ringchat/ringchat/api/v1alpha1"
	chatclient "github.com/ringchat/ringchat/chatd/client"
	"github.com/ringchat/ringchat/chatd/protocol"
)

// Deadlines of the waits. Generous: pods restart one at a time, each
// draining its rooms first (up to drainTimeout + shutdownTimeout), and a
// rollout of three to five pods on a 2-core machine takes minutes.
const (
	// settleTimeout bounds the wait for a cluster that should already be
	// settled, or nearly (the start of a test).
	settleTimeout = 5 * time.Minute
	// rolloutTimeout bounds one change: a scaling step, a rollout, a pod
	// replaced.
	rolloutTimeout = 10 * time.Minute
)

// mustSettle waits until the cluster is settled as want says, failing the
// test with what was observed otherwise.
func mustSettle(t *testing.T, ctx context.Context, within time.Duration, want expectation) {
	t.Helper()
	start := time.Now()
	if err := env.waitSettled(ctx, within, want); err != nil {
		t.Fatal(err)
	}
	t.Logf("settled at %d ready replicas of %s after %v", want.replicas, want.image, time.Since(start).Round(time.Second))
}

// clusterAndPods reads the ChatCluster and lists its pods (see clusterPods),
// failing the test on an error.
func clusterAndPods(t *testing.T, ctx context.Context) (*chatv1alpha1.ChatCluster, []corev1.Pod) {
	t.Helper()
	cc, err := env.chatCluster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pods, err := env.clusterPods(ctx, cc)
	if err != nil {
		t.Fatal(err)
	}
	return cc, pods
}

// TestChatClusterAvailable: the ChatCluster the scripts applied is up as
// its status says (Available, not Progressing, not Degraded, for its
// current generation, three ready replicas), every pod sees the same three
// active members (the pods), and the NodePort answers on every node.
func TestChatClusterAvailable(t *testing.T) {
	dumpOnFailure(t)
	ctx := context.Background()
	want := originalExpectation()
	if want.replicas != 3 {
		t.Fatalf("the suite expects the ChatCluster applied with 3 replicas; spec.replicas is %d", want.replicas)
	}
	mustSettle(t, ctx, settleTimeout, want)

	cc, pods := clusterAndPods(t, ctx)
	t.Logf("ChatCluster %s/%s: %s", env.namespace, env.name, describeStatus(cc))
	t.Logf("pods (placement shows whether the run spans nodes):\n%s", describePods(pods))
	statuses, err := env.adminStatuses(ctx, cc, pods)
	if err != nil {
		t.Fatal(err)
	}
	names := slices.Sorted(slices.Values(podNames(pods)))
	for i, st := range statuses {
		if !slices.Equal(st.Active, names) || !st.Clustered {
			t.Errorf("%s's /admin/cluster: clustered=%v active=%v, want %v", pods[i].Name, st.Clustered, st.Active, names)
		}
	}

	urls, err := env.nodePortURLs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, url := range urls {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		c, err := chatclient.Connect(cctx, url, protocol.ClientFrame{Name: uniqueName("probe")}, chatclient.Options{})
		cancel()
		if err != nil {
			t.Errorf("NodePort %s: %v", url, err)
			continue
		}
		if !slices.Contains(names, c.Welcome.Server) {
			t.Errorf("NodePort %s: welcome from %q, not one of %v", url, c.Welcome.Server, names)
		}
		c.Close()
	}
}

// TestMessagesAcrossPods: a client on pod 0 and one on pod 1 share a room.
// Presence spans pods (B sees A join), and B receives A's 50 messages in
// order, with gapless sequence numbers equal to those of A's acks.
func TestMessagesAcrossPods(t *testing.T) {
	dumpOnFailure(t)
	ctx := context.Background()
	mustSettle(t, ctx, settleTimeout, originalExpectation())
	cc, pods := clusterAndPods(t, ctx)
	room := uniqueName("across")
	a := dialPod(t, ctx, cc, &pods[0], uniqueName("ann"))
	b := dialPod(t, ctx, cc, &pods[1], uniqueName("bob"))
	t.Logf("A (%s) on %s, B (%s) on %s, room %s", a.user, pods[0].Name, b.user, pods[1].Name, room)

	jb, err := b.join(room)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.join(room); err != nil {
		t.Fatal(err)
	}
	err = b.readUntil(30*time.Second, "presence of "+a.user, func(f chatclient.Frame) (bool, error) {
		if f.Type != protocol.TypePresence {
			return false, nil
		}
		var p protocol.Presence
		if err := f.Decode(&p); err != nil {
			return false, err
		}
		return p.Room == room && (slices.Contains(p.Joined, a.user) || slices.Contains(p.Present, a.user)), nil
	})
	if err != nil {
		t.Fatal(err)
	}

	const count = 50
	cids := make([]string, count)
	acked := make(map[string]uint64, count)
	for i := range cids {
		cids[i] = fmt.Sprintf("%s-%d", a.user, i)
		ack, err := a.say(room, cids[i], fmt.Sprintf("message %d of %d", i+1, count))
		if err != nil {
			t.Fatal(err)
		}
		if ack.Duplicate {
			t.Errorf("ack of %s marked duplicate: %+v", cids[i], ack)
		}
		acked[cids[i]] = ack.Seq
	}
	for i, cid := range cids {
		if want := jb.Head + uint64(i) + 1; acked[cid] != want {
			t.Errorf("ack of %s has seq %d, want %d (acks must be gapless from the head B joined at, %d)", cid, acked[cid], want, jb.Head)
		}
	}

	var got []protocol.Message
	err = b.readUntil(time.Minute, fmt.Sprintf("%d messages", count), func(f chatclient.Frame) (bool, error) {
		if f.Type != protocol.TypeMessage {
			return false, nil
		}
		var m protocol.Message
		if err := f.Decode(&m); err != nil {
			return false, err
		}
		if m.Room == room {
			got = append(got, m)
		}
		return len(got) == count, nil
	})
	if err != nil {
		t.Fatalf("%v (%d received)", err, len(got))
	}
	for i, m := range got {
		switch {
		case m.CID != cids[i] || m.From != a.user:
			t.Errorf("B's message %d is %s from %s, want %s from %s", i, m.CID, m.From, cids[i], a.user)
		case m.Seq != jb.Head+uint64(i)+1:
			t.Errorf("B's message %d (%s) has seq %d, want %d", i, m.CID, m.Seq, jb.Head+uint64(i)+1)
		case m.Seq != acked[m.CID]:
			t.Errorf("B got %s as seq %d, A's ack says %d", m.CID, m.Seq, acked[m.CID])
		}
	}
}

// TestScaleUpAndDown: under steady traffic, replicas 3→5 then back to 3
// through the scale subresource (kubectl scale). Scaling up raises the
// cluster size the pods read from their mounted ConfigMap, then adds pods;
// scaling down drains one pod at a time. The original pods are never
// restarted, every pod ends up applying the new size (settled checks it),
// and no acknowledged message is lost or duplicated; no container restarts
// either. The operator moves each step on as soon as every pod reports the
// size it applies (chatd_expected_nodes). With spec.storage,
// each new pod gets a volume of its own, and a pod scaled away loses its
// volume once it is gone (its rooms handed off first).
func TestScaleUpAndDown(t *testing.T) {
	ctx, orig := beginChange(t)
	before := podUIDs(t, ctx)
	restartsBefore := containerRestarts(t, ctx)
	tr := startTraffic(t, ctx)
	cc, err := env.chatCluster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	claims := func(n int32) {
		t.Helper()
		if cc.Spec.Storage == nil {
			return
		}
		if err := waitFor(ctx, rolloutTimeout, fmt.Sprintf("claims of ordinals 0..%d only, bound", n-1), func(ctx context.Context) (string, bool) {
			return env.claimsExactly(ctx, cc, n)
		}); err != nil {
			t.Fatal(err)
		}
	}

	up := orig
	up.replicas = orig.replicas + 2
	// timed scales through the scale subresource and logs how long the
	// cluster took to settle (docs/testing.md quotes these lines).
	timed := func(from int32, within time.Duration, want expectation) {
		t.Helper()
		start := time.Now()
		changeAndSettle(t, ctx, tr, within, want, func() error { return env.scale(ctx, want.replicas) })
		t.Logf("timing: kubectl scale %d→%d settled in %v", from, want.replicas, time.Since(start).Round(100*time.Millisecond))
	}
	timed(orig.replicas, rolloutTimeout, up)
	claims(up.replicas)
	timed(up.replicas, 2*rolloutTimeout, orig)
	claims(orig.replicas)
	tr.verify()
	if after := podUIDs(t, ctx); !maps.Equal(after, before) {
		t.Errorf("pods were replaced by scaling: before %v, after %v", before, after)
	}
	if after := containerRestarts(t, ctx); !maps.Equal(after, restartsBefore) {
		t.Errorf("containers restarted while scaling: restarts before %v, after %v", restartsBefore, after)
	}
}

// containerRestarts maps the cluster's pods to their containers' restart
// counts.
func containerRestarts(t *testing.T, ctx context.Context) map[string]int32 {
	t.Helper()
	_, pods := clusterAndPods(t, ctx)
	out := make(map[string]int32, len(pods))
	for _, p := range pods {
		for _, c := range p.Status.ContainerStatuses {
			out[p.Name] += c.RestartCount
		}
	}
	return out
}

// podUIDs maps the cluster's pods to their UIDs.
func podUIDs(t *testing.T, ctx context.Context) map[string]types.UID {
	t.Helper()
	_, pods := clusterAndPods(t, ctx)
	uids := make(map[string]types.UID, len(pods))
	for _, p := range pods {
		uids[p.Name] = p.UID
	}
	return uids
}

// beginChange prepares a test that changes the cluster: the original spec is
// restored and the state dumped when it ends (failed), and it starts from a
// settled cluster, which it returns the expectation of.
func beginChange(t *testing.T) (context.Context, expectation) {
	t.Helper()
	noReconcileFailures(t)
	restoreOnCleanup(t)
	dumpOnFailure(t)
	ctx := context.Background()
	want := originalExpectation()
	mustSettle(t, ctx, settleTimeout, want)
	return ctx, want
}

// noReconcileFailures fails the test, when it ends (after the cleanups
// registered later, which restore the cluster), if the operator recorded a
// ReconcileFailed event about the ChatCluster meanwhile: a rollout, a
// scaling step or a replaced pod is no failure of the operator (a write
// refused because its cache lagged is retried quietly, and must not show
// as a Warning, nor as Degraded=True).
func noReconcileFailures(t *testing.T) {
	start := time.Now()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		var list eventsv1.EventList
		if err := env.client.List(ctx, &list, client.InNamespace(env.namespace)); err != nil {
			t.Errorf("listing the events: %v", err)
			return
		}
		for _, e := range list.Items {
			if e.Regarding.Kind != "ChatCluster" || e.Regarding.Name != env.name || e.Reason != chatv1alpha1.ReasonReconcileFailed {
				continue
			}
			last := e.EventTime.Time
			if e.Series != nil {
				last = e.Series.LastObservedTime.Time
			}
			if last.After(start) {
				t.Errorf("the operator failed a reconcile during the test (%s, %s): %s", e.Type, last.Format(time.RFC3339), e.Note)
			}
		}
	})
}

// changeAndSettle makes a change to the cluster under traffic, waits until
// the cluster has settled as want says, and checks that the traffic still
// flows.
func changeAndSettle(t *testing.T, ctx context.Context, tr *traffic, within time.Duration, want expectation, change func() error) {
	t.Helper()
	if err := change(); err != nil {
		t.Fatal(err)
	}
	mustSettle(t, ctx, within, want)
	tr.flowing()
}

// TestDeletePodOwningBusyRoom: under steady traffic, delete the pod that
// owns the busy room (as /admin/cluster says). It drains: its rooms move to
// other pods, its clients reconnect through the NodePort and resume; the
// StatefulSet recreates it and the cluster settles. No acknowledged message
// is lost or duplicated.
func TestDeletePodOwningBusyRoom(t *testing.T) {
	ctx, want := beginChange(t)
	tr := startTraffic(t, ctx)

	owner, err := env.waitRoomOwner(ctx, tr.k.Room())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("deleting %s (uid %s), owner of %s, after %d acks", owner.Name, owner.UID, tr.k.Room(), tr.k.Acked())
	if err := env.client.Delete(ctx, owner, client.Preconditions{UID: &owner.UID}); err != nil {
		t.Fatalf("deleting pod %s: %v", owner.Name, err)
	}
	err = waitFor(ctx, rolloutTimeout, "pod "+owner.Name+" replaced and cluster settled", func(ctx context.Context) (string, bool) {
		var p corev1.Pod
		switch err := env.client.Get(ctx, types.NamespacedName{Namespace: owner.Namespace, Name: owner.Name}, &p); {
		case apierrors.IsNotFound(err):
			return "pod " + owner.Name + " gone, not recreated yet", false
		case err != nil:
			return err.Error(), false
		case p.UID == owner.UID:
			return "pod " + owner.Name + " still the deleted one (terminating)", false
		}
		return env.settled(ctx, want)
	})
	if err != nil {
		t.Fatal(err)
	}
	tr.flowing()
	if after, err := env.waitRoomOwner(ctx, tr.k.Room()); err == nil {
		t.Logf("%s is now owned by %s", tr.k.Room(), after.Name)
	}
	tr.verify()
}

// TestRollingUpgrade: under steady traffic, spec.image changes to the
// previous release (E2E_PREVIOUS_IMAGE) and the pods roll one at a time, as
// a rollback of a bad deploy would; then back to the working tree's image, a
// rolling upgrade from the previous release. Each rollout ends with
// status.currentImage the new image and every pod running it; old and new
// nodes meet mid-rollout, so the wire protocol and the store format must
// carry across. No acknowledged message is lost or duplicated.
func TestRollingUpgrade(t *testing.T) {
	if env.previous == "" {
		t.Fatal("E2E_PREVIOUS_IMAGE is not set: the upgrade needs the previous release's chatd image loaded into the kind nodes (hack/previous-release.sh)")
	}
	if orig := originalExpectation(); env.previous == orig.image {
		t.Fatalf("E2E_PREVIOUS_IMAGE is the ChatCluster's image already (%s): nothing would roll", orig.image)
	}
	if env.release == "" {
		t.Log("WARNING: E2E_PREVIOUS_RELEASE is empty: the previous release was not in this clone's history, " +
			"so the image rolled to is the working tree's under another tag; only the operator's rollout is tested")
	} else {
		t.Logf("previous release: %s (%s)", env.release, env.previous)
	}
	ctx, orig := beginChange(t)
	tr := startTraffic(t, ctx)

	previous := orig
	previous.image = env.previous
	// The rollback turns off what the previous release lacks, as its
	// runbook would: the operator passes chatd the flags of the spec, and a
	// release refuses a flag it does not know (v0.2.0 has no server API,
	// so --api-key-file would keep its pods from starting). The upgrade
	// puts the spec back as the suite found it.
	rollBack := func() error {
		return env.updateSpec(ctx, func(s *chatv1alpha1.ChatClusterSpec) {
			s.Image = previous.image
			s.ServerAPI = nil
		})
	}
	upgrade := func() error {
		return env.updateSpec(ctx, func(s *chatv1alpha1.ChatClusterSpec) {
			s.Image = orig.image
			s.ServerAPI = env.original.ServerAPI
		})
	}
	changeAndSettle(t, ctx, tr, rolloutTimeout, previous, rollBack)
	t.Logf("rolled back to %s", previous.image)
	changeAndSettle(t, ctx, tr, rolloutTimeout, orig, upgrade)
	t.Logf("rolled up to %s", orig.image)
	tr.verify()
}

// TestConfigChangeRollingRestart: under steady traffic, spec.historySize
// changes; the operator's config hash changes with it and rolls the pods,
// which then announce the new size in their welcome; then back. No
// acknowledged message is lost or duplicated.
func TestConfigChangeRollingRestart(t *testing.T) {
	ctx, want := beginChange(t)
	cc, err := env.chatCluster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	origHash, origSize := cc.Status.ConfigHash, cc.HistorySize()
	// Larger, so that resumes during the rollout stay within history.
	nextSize := origSize + 500
	if nextSize > 100000 {
		nextSize = origSize - 500
	}
	tr := startTraffic(t, ctx)

	if err := env.updateSpec(ctx, func(s *chatv1alpha1.ChatClusterSpec) { s.HistorySize = nextSize }); err != nil {
		t.Fatal(err)
	}
	newHash := waitConfigRolled(t, ctx, want, func(h string) bool { return h != origHash })
	t.Logf("historySize %d → %d: config hash %s → %s", origSize, nextSize, origHash, newHash)
	checkHistoryKept(t, ctx, int(nextSize))
	tr.flowing()

	if err := env.updateSpec(ctx, func(s *chatv1alpha1.ChatClusterSpec) { s.HistorySize = origSize }); err != nil {
		t.Fatal(err)
	}
	waitConfigRolled(t, ctx, want, func(h string) bool { return h == origHash })
	checkHistoryKept(t, ctx, int(origSize))
	tr.flowing()
	tr.verify()
}

// waitConfigRolled waits until the cluster is settled with a config hash
// that ok accepts (settled also checks that every pod carries it), and
// returns the hash.
func waitConfigRolled(t *testing.T, ctx context.Context, want expectation, ok func(string) bool) string {
	t.Helper()
	var hash string
	err := waitFor(ctx, rolloutTimeout, "pods rolled to the new configuration", func(ctx context.Context) (string, bool) {
		cc, err := env.chatCluster(ctx)
		if err != nil {
			return err.Error(), false
		}
		if msg, done := statusSettled(cc, want); !done {
			return msg, false
		}
		if hash = cc.Status.ConfigHash; !ok(hash) {
			return fmt.Sprintf("status.configHash still %q", hash), false
		}
		return env.settled(ctx, want)
	})
	if err != nil {
		t.Fatal(err)
	}
	return hash
}

// checkHistoryKept checks that every pod announces size as history_kept in
// its welcome: the pods run with the new --history-size.
func checkHistoryKept(t *testing.T, ctx context.Context, size int) {
	t.Helper()
	cc, pods := clusterAndPods(t, ctx)
	for i := range pods {
		c := dialPod(t, ctx, cc, &pods[i], uniqueName("probe"))
		if got := c.Welcome.Limits.HistoryKept; got != size {
			t.Errorf("pod %s announces history_kept %d, want %d", pods[i].Name, got, size)
		}
		c.Close()
	}
}

// TestInvalidChatClusterRefused: the API server refuses ChatClusters that
// break the CRD's rules, CEL and OpenAPI, with their messages, and creates
// nothing.
func TestInvalidChatClusterRefused(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		change func(*chatv1alpha1.ChatClusterSpec)
		field  string // the field the error names
		want   string // in the error's message
	}{
		{"replicationFactor above replicas", func(s *chatv1alpha1.ChatClusterSpec) { s.Replicas, s.ReplicationFactor = ptr.To[int32](2), 3 },
			"spec.replicationFactor", "replicationFactor cannot exceed replicas"},
		{"no way to authenticate", func(s *chatv1alpha1.ChatClusterSpec) { s.Auth.AllowAnonymous = false },
			"spec.auth", "no way to authenticate: set jwtSecretRef, jwtPublicKeySecretRef, jwksSecretRef or allowAnonymous (or a connect hook in spec.hooks)"},
		{"negative replicas", func(s *chatv1alpha1.ChatClusterSpec) { s.Replicas = ptr.To[int32](-1) },
			"spec.replicas", "should be greater than or equal to 0"},
		{"unknown pull policy", func(s *chatv1alpha1.ChatClusterSpec) { s.ImagePullPolicy = "Sometimes" },
			"spec.imagePullPolicy", `supported values: "Always", "Never", "IfNotPresent"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cc := &chatv1alpha1.ChatCluster{
				ObjectMeta: metav1.ObjectMeta{Namespace: env.namespace, Name: uniqueName("e2e-invalid")},
				Spec: chatv1alpha1.ChatClusterSpec{
					Replicas: ptr.To[int32](3),
					Auth:     chatv1alpha1.AuthSpec{AllowAnonymous: true},
				},
			}
			tc.change(&cc.Spec)
			err := env.client.Create(ctx, cc)
			if err == nil {
				t.Cleanup(func() { _ = env.client.Delete(context.Background(), cc) })
				t.Fatalf("ChatCluster %s was created; want it refused with %q", cc.Name, tc.want)
			}
			if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("create: %v; want an Invalid error containing %q", err, tc.want)
			}
			if !causeNames(err, tc.field) {
				t.Errorf("create: %v; want a cause on field %s", err, tc.field)
			}
			var got chatv1alpha1.ChatCluster
			if err := env.client.Get(ctx, client.ObjectKeyFromObject(cc), &got); !apierrors.IsNotFound(err) {
				t.Errorf("after the refused create, get %s: %v; want NotFound", cc.Name, err)
			}
		})
	}
}

// causeNames reports whether the API error lists a cause on field.
func causeNames(err error, field string) bool {
	var status apierrors.APIStatus
	if !errors.As(err, &status) || status.Status().Details == nil {
		return false
	}
	for _, c := range status.Status().Details.Causes {
		if c.Field == field {
			return true
		}
	}
	return false
}
