//go:build e2e

package e2e

// Durable history on Kubernetes (spec.storage). Two kinds of tests:
//
//   - TestStorage*: the volumes themselves, which the operator, the
//     StatefulSet controller and the cluster's dynamic provisioner make
//     (claims bound through the default StorageClass, mounted at chatd's data
//     directory, deleted after a scale-down, kept after the ChatCluster is
//     deleted). They hold whatever chatd does with the volume.
//   - TestDurable*: what chatd keeps on them, under the delivery checker:
//     every pod deleted at once, rooms moved by a scale 3→5→3, a room idle
//     past --room-idle-ttl. They need chatd's store (--data-dir) and fail
//     without it.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	chatv1alpha1 "github.com/ringchat/ringchat/api/v1alpha1"
	"github.com/ringchat/ringchat/chatd/admin"
	chatclient "github.com/ringchat/ringchat/chatd/client"
	"github.com/ringchat/ringchat/chatd/protocol"
	"github.com/ringchat/ringchat/chatd/rendezvous"
)

// historyPageLimit is the largest history page the protocol allows.
const historyPageLimit = 200

// requireStorage fails the test unless the ChatCluster under test has
// spec.storage (e2e/testdata/chatcluster.yaml sets it).
func requireStorage(t *testing.T, ctx context.Context) *chatv1alpha1.ChatCluster {
	t.Helper()
	cc, err := env.chatCluster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cc.Spec.Storage == nil {
		t.Fatalf("ChatCluster %s/%s has no spec.storage: the storage tests need the one e2e/testdata/chatcluster.yaml describes", env.namespace, env.name)
	}
	return cc
}

// dataClaims lists the ChatCluster's data claims (data-<name>-<ordinal>,
// labelled with its selector labels), by name.
func (e *environment) dataClaims(ctx context.Context, cc *chatv1alpha1.ChatCluster) (map[string]corev1.PersistentVolumeClaim, error) {
	var list corev1.PersistentVolumeClaimList
	if err := e.client.List(ctx, &list, client.InNamespace(cc.Namespace), client.MatchingLabels(cc.SelectorLabels())); err != nil {
		return nil, fmt.Errorf("listing PersistentVolumeClaims: %w", err)
	}
	out := map[string]corev1.PersistentVolumeClaim{}
	for _, c := range list.Items {
		if strings.HasPrefix(c.Name, chatv1alpha1.DataVolumeName+"-"+cc.Name+"-") {
			out[c.Name] = c
		}
	}
	return out, nil
}

// claimsExactly checks that cc's data claims are exactly those of ordinals
// 0..n-1, each bound.
func (e *environment) claimsExactly(ctx context.Context, cc *chatv1alpha1.ChatCluster, n int32) (string, bool) {
	claims, err := e.dataClaims(ctx, cc)
	if err != nil {
		return err.Error(), false
	}
	var names []string
	for name := range claims {
		names = append(names, name)
	}
	slices.SortFunc(names, comparePodNames)
	if len(claims) != int(n) {
		return fmt.Sprintf("claims %v, want data-%s-0..%d", names, cc.Name, n-1), false
	}
	for i := range n {
		c, ok := claims[cc.DataClaimName(i)]
		switch {
		case !ok:
			return fmt.Sprintf("no claim %s among %v", cc.DataClaimName(i), names), false
		case c.Status.Phase != corev1.ClaimBound:
			return fmt.Sprintf("claim %s is %s", c.Name, c.Status.Phase), false
		}
	}
	return fmt.Sprintf("claims %v, all bound", names), true
}

// TestStorageVolumes: with spec.storage every pod has its own claim,
// provisioned by the cluster's dynamic provisioner through the default
// StorageClass and bound; the pod mounts it at chatd's data directory and
// runs chatd with --data-dir there; the StatefulSet keeps the claims when
// it is deleted and deletes a scaled-away pod's; the ChatCluster's status
// says Persistent and counts the bound claims.
func TestStorageVolumes(t *testing.T) {
	dumpOnFailure(t)
	ctx := context.Background()
	want := originalExpectation()
	mustSettle(t, ctx, settleTimeout, want)
	cc := requireStorage(t, ctx)
	if err := waitFor(ctx, settleTimeout, "every claim bound", func(ctx context.Context) (string, bool) {
		return env.claimsExactly(ctx, cc, want.replicas)
	}); err != nil {
		t.Fatal(err)
	}
	claims, err := env.dataClaims(ctx, cc)
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range claims {
		if got, want := c.Spec.Resources.Requests[corev1.ResourceStorage], cc.Spec.Storage.Size; got.Cmp(want) < 0 {
			t.Errorf("claim %s requests %s, want at least spec.storage.size %s", name, got.String(), want.String())
		}
		var pv corev1.PersistentVolume
		if err := env.client.Get(ctx, types.NamespacedName{Name: c.Spec.VolumeName}, &pv); err != nil {
			t.Errorf("claim %s: its volume %q: %v", name, c.Spec.VolumeName, err)
			continue
		}
		by := pv.Annotations["pv.kubernetes.io/provisioned-by"]
		if by == "" || pv.Spec.ClaimRef == nil || pv.Spec.ClaimRef.Name != name {
			t.Errorf("volume %s of claim %s: provisioned by %q, claim %v; want a dynamically provisioned volume bound to the claim", pv.Name, name, by, pv.Spec.ClaimRef)
		}
		t.Logf("claim %s: class %s, volume %s (%s, provisioned by %s)", name, ptr.Deref(c.Spec.StorageClassName, ""), pv.Name, describeVolumeSource(&pv), by)
	}

	_, pods := clusterAndPods(t, ctx)
	for i := range pods {
		p := &pods[i]
		claim := ""
		for _, v := range p.Spec.Volumes {
			if v.Name == chatv1alpha1.DataVolumeName && v.PersistentVolumeClaim != nil {
				claim = v.PersistentVolumeClaim.ClaimName
			}
		}
		ordinal := p.Name[strings.LastIndexByte(p.Name, '-')+1:]
		if wantClaim := chatv1alpha1.DataVolumeName + "-" + cc.Name + "-" + ordinal; claim != wantClaim {
			t.Errorf("pod %s uses claim %q, want %s", p.Name, claim, wantClaim)
		}
		mounted, dataDir := false, false
		for _, c := range p.Spec.Containers {
			for _, m := range c.VolumeMounts {
				mounted = mounted || (m.Name == chatv1alpha1.DataVolumeName && m.MountPath == chatv1alpha1.DataMountPath && !m.ReadOnly)
			}
			dataDir = dataDir || slices.Contains(c.Args, "--data-dir="+chatv1alpha1.DataMountPath)
		}
		if !mounted || !dataDir {
			t.Errorf("pod %s: volume mounted writable at %s: %v; chatd --data-dir there: %v", p.Name, chatv1alpha1.DataMountPath, mounted, dataDir)
		}
	}

	sts, err := env.statefulSet(ctx, cc)
	if err != nil {
		t.Fatal(err)
	}
	wantPolicy := appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{
		WhenDeleted: appsv1.RetainPersistentVolumeClaimRetentionPolicyType,
		WhenScaled:  appsv1.DeletePersistentVolumeClaimRetentionPolicyType,
	}
	if p := sts.Spec.PersistentVolumeClaimRetentionPolicy; p == nil || *p != wantPolicy {
		t.Errorf("StatefulSet claim retention policy %+v, want %+v", p, wantPolicy)
	}
	cc, err = env.chatCluster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st := cc.Status.Storage; st == nil || st.Mode != chatv1alpha1.StorageModePersistent || st.Claims != want.replicas || st.BoundClaims != want.replicas {
		t.Errorf("status.storage %+v, want Persistent with %d claims bound", st, want.replicas)
	}
}

// describeVolumeSource names where a volume's data lives.
func describeVolumeSource(pv *corev1.PersistentVolume) string {
	switch {
	case pv.Spec.HostPath != nil:
		return "hostPath " + pv.Spec.HostPath.Path
	case pv.Spec.Local != nil:
		return "local " + pv.Spec.Local.Path
	}
	return "other source"
}

// TestStorageKeptAfterChatClusterDelete: a second, one-node ChatCluster
// with storage gets its volume; deleting the ChatCluster deletes its pod
// and StatefulSet but keeps the claim and its volume (whenDeleted: Retain);
// deleting the claim by hand, as the docs say, then releases the volume,
// which the provisioner removes.
func TestStorageKeptAfterChatClusterDelete(t *testing.T) {
	dumpOnFailure(t)
	ctx := context.Background()
	orig := requireStorage(t, ctx)
	cc := &chatv1alpha1.ChatCluster{
		ObjectMeta: metav1.ObjectMeta{Namespace: env.namespace, Name: uniqueName("kept")},
		Spec: chatv1alpha1.ChatClusterSpec{
			Replicas:          ptr.To[int32](1),
			ReplicationFactor: 1,
			Image:             orig.Spec.Image,
			ImagePullPolicy:   orig.Spec.ImagePullPolicy,
			Auth:              chatv1alpha1.AuthSpec{AllowAnonymous: true},
			Resources:         orig.Spec.Resources,
			Storage:           &chatv1alpha1.StorageSpec{Size: resource.MustParse("64Mi")},
		},
	}
	if err := env.client.Create(ctx, cc); err != nil {
		t.Fatalf("creating ChatCluster %s: %v", cc.Name, err)
	}
	claimName := cc.DataClaimName(0)
	t.Cleanup(func() {
		// Whatever happened: the ChatCluster and its claim go.
		_ = env.client.Delete(context.Background(), cc)
		_ = env.client.Delete(context.Background(), &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: env.namespace, Name: claimName}})
	})
	var volume string
	err := waitFor(ctx, rolloutTimeout, "ChatCluster "+cc.Name+" available with its claim bound", func(ctx context.Context) (string, bool) {
		var got chatv1alpha1.ChatCluster
		if err := env.client.Get(ctx, client.ObjectKeyFromObject(cc), &got); err != nil {
			return err.Error(), false
		}
		if msg, ok := env.claimsExactly(ctx, &got, 1); !ok {
			return msg, false
		}
		if st := got.Status.Storage; st == nil || st.BoundClaims != 1 || got.Status.ReadyReplicas != 1 {
			return "status " + describeStatus(&got), false
		}
		claims, err := env.dataClaims(ctx, &got)
		if err != nil {
			return err.Error(), false
		}
		volume = claims[claimName].Spec.VolumeName
		return "ready, claim bound to " + volume, true
	})
	if err != nil {
		t.Fatal(err)
	}

	if err := env.client.Delete(ctx, cc); err != nil {
		t.Fatalf("deleting ChatCluster %s: %v", cc.Name, err)
	}
	err = waitFor(ctx, rolloutTimeout, "the ChatCluster's pod and StatefulSet gone", func(ctx context.Context) (string, bool) {
		var pods corev1.PodList
		if err := env.client.List(ctx, &pods, client.InNamespace(env.namespace), client.MatchingLabels(cc.SelectorLabels())); err != nil {
			return err.Error(), false
		}
		var sts appsv1.StatefulSet
		err := env.client.Get(ctx, client.ObjectKeyFromObject(cc), &sts)
		switch {
		case len(pods.Items) > 0:
			return fmt.Sprintf("pods left: %v", podNames(pods.Items)), false
		case err == nil:
			return "StatefulSet " + sts.Name + " still there", false
		case !apierrors.IsNotFound(err):
			return err.Error(), false
		}
		return "gone", true
	})
	if err != nil {
		t.Fatal(err)
	}
	var claim corev1.PersistentVolumeClaim
	if err := env.client.Get(ctx, types.NamespacedName{Namespace: env.namespace, Name: claimName}, &claim); err != nil {
		t.Fatalf("claim %s after the ChatCluster's deletion: %v (want it kept)", claimName, err)
	}
	if claim.DeletionTimestamp != nil || claim.Status.Phase != corev1.ClaimBound || claim.Spec.VolumeName != volume {
		t.Errorf("claim %s after the ChatCluster's deletion: phase %s, volume %q, deleting %v; want bound to %s and kept",
			claimName, claim.Status.Phase, claim.Spec.VolumeName, claim.DeletionTimestamp != nil, volume)
	}
	for _, ref := range claim.OwnerReferences {
		t.Errorf("claim %s is owned by %s %s: the garbage collector would delete it", claimName, ref.Kind, ref.Name)
	}

	// As the documentation says: delete the claims by their labels.
	if err := env.client.DeleteAllOf(ctx, &corev1.PersistentVolumeClaim{}, client.InNamespace(env.namespace), client.MatchingLabels(cc.SelectorLabels())); err != nil {
		t.Fatalf("deleting the claims of %s: %v", cc.Name, err)
	}
	err = waitFor(ctx, rolloutTimeout, "claim "+claimName+" and volume "+volume+" removed", func(ctx context.Context) (string, bool) {
		if err := env.client.Get(ctx, types.NamespacedName{Namespace: env.namespace, Name: claimName}, &corev1.PersistentVolumeClaim{}); !apierrors.IsNotFound(err) {
			return fmt.Sprintf("claim: %v", err), false
		}
		var pv corev1.PersistentVolume
		switch err := env.client.Get(ctx, types.NamespacedName{Name: volume}, &pv); {
		case apierrors.IsNotFound(err):
			return "both gone", true
		case err != nil:
			return err.Error(), false
		default:
			return "volume " + volume + " is " + string(pv.Status.Phase), false
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}

// nodePortClient connects a client named user through the client Service's
// NodePort (any ready pod), paced to the server's rate limit; it closes
// when the test ends.
func nodePortClient(t *testing.T, ctx context.Context, user string) *podClient {
	t.Helper()
	urls, err := env.nodePortURLs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var errs []error
	for _, url := range urls {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		c, err := chatclient.Connect(cctx, url, protocol.ClientFrame{Name: user}, chatclient.Options{})
		cancel()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		t.Cleanup(c.Close)
		return &podClient{Conn: c, user: user, pace: newPacer(c.Welcome.Limits)}
	}
	t.Fatalf("connecting %s through %v: %v", user, urls, errors.Join(errs...))
	return nil
}

// seededRoom is a room the test wrote to itself, and what it was told.
type seededRoom struct {
	room  string
	epoch string
	acks  map[string]protocol.Ack // cid → ack
}

// seedRooms writes count messages to each room, from writers connections
// per room through the NodePort, and returns each room's acks and epoch.
// The writers leave the rooms when done.
func seedRooms(t *testing.T, ctx context.Context, rooms []string, count, writers int) []*seededRoom {
	t.Helper()
	out := make([]*seededRoom, len(rooms))
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, len(rooms)*writers)
	for i, room := range rooms {
		out[i] = &seededRoom{room: room, acks: map[string]protocol.Ack{}}
		for w := range writers {
			c := nodePortClient(t, ctx, uniqueName("seed"))
			wg.Add(1)
			go func(sr *seededRoom, c *podClient, w int) {
				defer wg.Done()
				defer c.Close()
				j, err := c.join(sr.room)
				if err != nil {
					errs <- err
					return
				}
				for n := w; n < count; n += writers {
					cid := fmt.Sprintf("%s-%d", c.user, n)
					ack, err := c.say(sr.room, cid, fmt.Sprintf("stored message %d of %d in %s", n+1, count, sr.room))
					if err != nil {
						errs <- err
						return
					}
					mu.Lock()
					sr.acks[cid] = ack
					mu.Unlock()
				}
				mu.Lock()
				if sr.epoch == "" {
					sr.epoch = j.Epoch
				} else if sr.epoch != j.Epoch {
					errs <- fmt.Errorf("%s: writers joined epochs %s and %s", sr.room, sr.epoch, j.Epoch)
				}
				mu.Unlock()
			}(out[i], c, w)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("seeding rooms: %v", err)
	}
	t.Logf("seeded %d rooms with %d messages each", len(rooms), count)
	return out
}

// readHistory joins room and pages back through its whole kept history,
// returning the joined frame and the messages in ascending order.
func (c *podClient) readHistory(room string) (protocol.Joined, []protocol.Message, error) {
	j, err := c.join(room)
	if err != nil {
		return j, nil, err
	}
	var all []protocol.Message
	before := uint64(0) // the head
	for page := 0; ; page++ {
		id := fmt.Sprintf("h-%s-%d", room, page)
		if err := c.send(protocol.ClientFrame{Type: protocol.TypeHistory, ID: id, Room: room, Before: before, Limit: historyPageLimit}); err != nil {
			return j, nil, err
		}
		var h protocol.HistoryPage
		err := c.readUntil(time.Minute, "history page "+id, func(f chatclient.Frame) (bool, error) {
			switch f.Type {
			case protocol.TypeHistory:
				if err := f.Decode(&h); err != nil {
					return false, err
				}
				return h.ID == id, nil
			case protocol.TypeError:
				var e protocol.Error
				if err := f.Decode(&e); err != nil {
					return false, err
				}
				if e.ID == id {
					return false, fmt.Errorf("history refused: %s: %s", e.Code, e.Message)
				}
			}
			return false, nil
		})
		if err != nil {
			return j, nil, err
		}
		if h.Epoch != j.Epoch {
			return j, nil, fmt.Errorf("%s: history page in epoch %s, joined %s", room, h.Epoch, j.Epoch)
		}
		all = append(slices.Clone(h.Messages), all...)
		if !h.More || len(h.Messages) == 0 {
			return j, all, nil
		}
		before = h.Messages[0].Seq
	}
}

// checkHistory checks a room's history read back against what was written:
// the same epoch, gapless from sequence 1 to the head, and every
// acknowledged message at the sequence of its ack, with its message id.
func checkHistory(t *testing.T, sr *seededRoom, j protocol.Joined, msgs []protocol.Message) {
	t.Helper()
	if j.Epoch != sr.epoch {
		t.Errorf("%s: epoch %s, was %s when written: its history was lost and the room started again", sr.room, j.Epoch, sr.epoch)
		return
	}
	if j.Oldest != 1 && len(msgs) > 0 {
		t.Errorf("%s: oldest kept seq %d, want 1 (nothing is old enough for the retention limits)", sr.room, j.Oldest)
	}
	bySeq := make(map[uint64]protocol.Message, len(msgs))
	for i, m := range msgs {
		if want := uint64(i + 1); m.Seq != want {
			t.Errorf("%s: history message %d has seq %d, want %d (gapless from 1)", sr.room, i, m.Seq, want)
			return
		}
		bySeq[m.Seq] = m
	}
	if uint64(len(msgs)) != j.Head {
		t.Errorf("%s: %d messages in history, head %d", sr.room, len(msgs), j.Head)
	}
	missing := 0
	for cid, ack := range sr.acks {
		m, ok := bySeq[ack.Seq]
		if !ok || m.CID != cid || m.MID != ack.MID {
			missing++
			if missing <= 5 {
				t.Errorf("%s: acked %s (seq %d, mid %s) is not in history (found %+v)", sr.room, cid, ack.Seq, ack.MID, m)
			}
		}
	}
	if missing > 0 {
		t.Errorf("%s: %d of %d acknowledged messages missing from history", sr.room, missing, len(sr.acks))
	}
}

// checkRoomsThrough reads each room's whole history through a fresh client
// (the NodePort, or, when owners is set, a port-forward to the pod expected
// to own it, which /admin/cluster must confirm) and checks it.
func checkRoomsThrough(t *testing.T, ctx context.Context, rooms []*seededRoom, owners map[string]*corev1.Pod) {
	t.Helper()
	cc, err := env.chatCluster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, sr := range rooms {
		var c *podClient
		if p := owners[sr.room]; p != nil {
			c = dialPod(t, ctx, cc, p, uniqueName("reader"))
		} else {
			c = nodePortClient(t, ctx, uniqueName("reader"))
		}
		j, msgs, err := c.readHistory(sr.room)
		if err == nil && owners[sr.room] != nil {
			// The reader's join brought the room into its owner's memory:
			// the pods themselves must agree it is the one expected.
			var owner *corev1.Pod
			if owner, err = env.waitRoomOwner(ctx, sr.room); err == nil && owner.Name != owners[sr.room].Name {
				err = fmt.Errorf("owned by %s, want %s", owner.Name, owners[sr.room].Name)
			}
		}
		c.Close()
		if err != nil {
			t.Errorf("%s: %v", sr.room, err)
			continue
		}
		checkHistory(t, sr, j, msgs)
	}
}

// TestDurableEveryPodDeletedAtOnce: under steady traffic, with rooms
// stored beforehand, every chatd pod is deleted at the same moment (as
// `kubectl delete pods --all`, a node-pool upgrade or a power cut would):
// no node is left to hand rooms to. The StatefulSet recreates the pods on
// their volumes; the checker's clients reconnect and resume (joined with
// recovered: true, same epoch), every acknowledged message reaches every
// subscriber exactly once, and each room's whole history is still there
// under the epoch it had. Needs chatd's store.
func TestDurableEveryPodDeletedAtOnce(t *testing.T) {
	ctx, want := beginChange(t)
	cc := requireStorage(t, ctx)
	stored := seedRooms(t, ctx, []string{uniqueName("stored"), uniqueName("stored")}, 300, 2)
	tr := startTraffic(t, ctx)
	// The checker's own room too: read its epoch as a writer saw it.
	w := nodePortClient(t, ctx, uniqueName("watch"))
	jb, err := w.join(tr.k.Room())
	if err != nil {
		t.Fatal(err)
	}
	w.Close()

	_, pods := clusterAndPods(t, ctx)
	old := map[types.UID]bool{}
	for _, p := range pods {
		old[p.UID] = true
	}
	t.Logf("deleting every pod at once (%v) after %d acks", podNames(pods), tr.k.Acked())
	if err := env.client.DeleteAllOf(ctx, &corev1.Pod{}, client.InNamespace(env.namespace), client.MatchingLabels(cc.SelectorLabels())); err != nil {
		t.Fatalf("deleting the pods: %v", err)
	}
	err = waitFor(ctx, rolloutTimeout, "every pod replaced and the cluster settled", func(ctx context.Context) (string, bool) {
		cc, err := env.chatCluster(ctx)
		if err != nil {
			return err.Error(), false
		}
		now, err := env.clusterPods(ctx, cc)
		if err != nil {
			return err.Error(), false
		}
		for _, p := range now {
			if old[p.UID] {
				return "pod " + p.Name + " is still the deleted one", false
			}
		}
		return env.settled(ctx, want)
	})
	if err != nil {
		t.Fatal(err)
	}
	tr.flowing()
	tr.verify()

	r := nodePortClient(t, ctx, uniqueName("reader"))
	j, _, err := r.readHistory(tr.k.Room())
	if err != nil {
		t.Fatal(err)
	}
	if j.Epoch != jb.Epoch || j.Oldest != 1 || j.Head < uint64(tr.k.Acked()) {
		t.Errorf("%s after every pod restarted: epoch %s (was %s), oldest %d, head %d with %d acks; want the same epoch and every message from 1",
			tr.k.Room(), j.Epoch, jb.Epoch, j.Oldest, j.Head, tr.k.Acked())
	}
	checkRoomsThrough(t, ctx, stored, nil)
}

// newOwnerRooms picks n room names that rendezvous hashing gives to one of
// the pods a scale-up from `from` to `to` pods adds (ordinals from..to-1),
// and n that stay on the pods that were there: the scale-up moves the
// first n to the new pods, and the scale-down back moves them again.
func newOwnerRooms(cc *chatv1alpha1.ChatCluster, from, to int32, n int) (moving, staying []string) {
	var all []string
	for i := range to {
		all = append(all, fmt.Sprintf("%s-%d", cc.Name, i))
	}
	for len(moving) < n || len(staying) < n {
		room := uniqueName("moved")
		owner := rendezvous.Owner(room, all)
		ordinal := strings.TrimPrefix(owner, cc.Name+"-")
		isNew := false
		for i := from; i < to; i++ {
			isNew = isNew || ordinal == fmt.Sprint(i)
		}
		switch {
		case isNew && len(moving) < n:
			moving = append(moving, room)
		case !isNew && len(staying) < n:
			staying = append(staying, room)
		}
	}
	return moving, staying
}

// ringOwners maps each room to the pod rendezvous hashing makes its owner
// among the cluster's pods, all of them active once the cluster is settled.
// (An idle room is in no pod's memory, so /admin/cluster cannot say; the
// reader's join brings it back on its owner.)
func ringOwners(t *testing.T, ctx context.Context, rooms []*seededRoom) map[string]*corev1.Pod {
	t.Helper()
	_, pods := clusterAndPods(t, ctx)
	names := podNames(pods)
	out := map[string]*corev1.Pod{}
	for _, sr := range rooms {
		owner := rendezvous.Owner(sr.room, names)
		i := slices.Index(names, owner)
		if i < 0 {
			t.Fatalf("ring owner %q of %s is not one of the pods %v", owner, sr.room, names)
		}
		out[sr.room] = &pods[i]
	}
	return out
}

// TestDurableScaleMovesStoredHistory: rooms with more history than a node
// keeps in memory (historySize) are stored, the cluster scales 3→5 under
// traffic, and the rooms rendezvous hashing gives to the new pods (chosen
// so) are read back through those pods, page by page, in full; and rooms
// that stay, through theirs; then 5→3 and the same again through their
// owners. Needs chatd's store (the handoff streams the
// stored history to the new owner).
func TestDurableScaleMovesStoredHistory(t *testing.T) {
	ctx, orig := beginChange(t)
	cc := requireStorage(t, ctx)
	up := orig
	up.replicas = orig.replicas + 2
	moving, staying := newOwnerRooms(cc, orig.replicas, up.replicas, 2)
	// More than the in-memory history, so that pages come from disk.
	count := int(cc.HistorySize()) + 100
	rooms := seedRooms(t, ctx, slices.Concat(moving, staying), count, 3)
	tr := startTraffic(t, ctx)

	changeAndSettle(t, ctx, tr, rolloutTimeout, up, func() error { return env.scale(ctx, up.replicas) })
	owners := ringOwners(t, ctx, rooms)
	for _, room := range moving {
		ordinal := strings.TrimPrefix(owners[room].Name, cc.Name+"-")
		if ordinal != fmt.Sprint(orig.replicas) && ordinal != fmt.Sprint(orig.replicas+1) {
			t.Errorf("%s is owned by %s after the scale-up, want one of the new pods", room, owners[room].Name)
		}
	}
	checkRoomsThrough(t, ctx, rooms, owners)

	changeAndSettle(t, ctx, tr, 2*rolloutTimeout, orig, func() error { return env.scale(ctx, orig.replicas) })
	checkRoomsThrough(t, ctx, rooms, ringOwners(t, ctx, rooms))
	tr.verify()
}

// roomIdleTTL is the pods' --room-idle-ttl as the ChatCluster sets it
// (spec.podTemplate.env CHATD_ROOM_IDLE_TTL; chatd's default otherwise).
func roomIdleTTL(cc *chatv1alpha1.ChatCluster) (time.Duration, error) {
	if cc.Spec.PodTemplate != nil {
		for _, e := range cc.Spec.PodTemplate.Env {
			if e.Name == "CHATD_ROOM_IDLE_TTL" {
				d, err := time.ParseDuration(e.Value)
				if err != nil {
					return 0, fmt.Errorf("CHATD_ROOM_IDLE_TTL %q: %w", e.Value, err)
				}
				return d, nil
			}
		}
	}
	return 5 * time.Minute, nil
}

// TestDurableIdleRoomKeepsHistory: a room is written to and left empty
// longer than --room-idle-ttl, until no pod holds it in memory any more
// (/admin/cluster lists it nowhere); its whole history is then still
// there, under the same epoch. Needs chatd's store (without it the room's
// history goes with its memory, and the next join starts a new epoch).
func TestDurableIdleRoomKeepsHistory(t *testing.T) {
	dumpOnFailure(t)
	ctx := context.Background()
	mustSettle(t, ctx, settleTimeout, originalExpectation())
	cc := requireStorage(t, ctx)
	ttl, err := roomIdleTTL(cc)
	if err != nil {
		t.Fatal(err)
	}
	rooms := seedRooms(t, ctx, []string{uniqueName("idle")}, 120, 1)
	room := rooms[0].room
	// The owner checks its rooms every second once they are empty; the
	// views of the other pods follow within a few gossip rounds.
	within := ttl + time.Minute
	err = waitFor(ctx, within, room+" gone from every pod's memory", func(ctx context.Context) (string, bool) {
		cc, err := env.chatCluster(ctx)
		if err != nil {
			return err.Error(), false
		}
		pods, err := env.clusterPods(ctx, cc)
		if err != nil {
			return err.Error(), false
		}
		statuses, err := env.adminStatuses(ctx, cc, pods)
		if err != nil {
			return err.Error(), false
		}
		for i, st := range statuses {
			held := slices.Contains(st.OwnedRooms, room) || slices.Contains(st.ReplicaRooms, room) ||
				slices.ContainsFunc(st.LocalRooms, func(r admin.LocalRoom) bool { return r.Room == room })
			if held {
				return pods[i].Name + " still holds " + room, false
			}
		}
		return "no pod holds " + room, true
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s left memory (room idle TTL %v)", room, ttl)
	checkRoomsThrough(t, ctx, rooms, nil)
}
