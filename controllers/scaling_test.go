package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	chatv1alpha1 "github.com/ringchat/ringchat/api/v1alpha1"
	"github.com/ringchat/ringchat/controllers/chatdconfig"
	"github.com/ringchat/ringchat/controllers/clustersize"
	"github.com/ringchat/ringchat/controllers/internal/chatdtest"
	"github.com/ringchat/ringchat/controllers/resources"
	"github.com/ringchat/ringchat/controllers/scaling"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// applies waits until pod name's chatd reports size, asked over HTTP as
// the operator asks it.
func (p *podSim) applies(t *testing.T, name string, size int32) {
	t.Helper()
	prober := clustersize.NewHTTPProber(5 * time.Second)
	defer prober.Close()
	eventually(t, fmt.Sprintf("%s applies a cluster size of %d", name, size), func() error {
		pod := &corev1.Pod{}
		if err := p.s.admin.Get(context.Background(), client.ObjectKey{Namespace: p.cc.Namespace, Name: name}, pod); err != nil {
			return err
		}
		got, err := prober.Applied(context.Background(), pod)
		if err != nil {
			return err
		}
		if got != size {
			return fmt.Errorf("applies %d", got)
		}
		return nil
	})
}

// planIs waits for the StatefulSet to carry replicas and expected, and the
// ConfigMap to hold expected.
func (s *suite) planIs(t *testing.T, cc *chatv1alpha1.ChatCluster, what string, want scaling.Plan) {
	t.Helper()
	s.waitSts(t, cc, what, func(sts *appsv1.StatefulSet) error {
		if got := scaling.Current(sts); got != want {
			return fmt.Errorf("plan %+v, want %+v", got, want)
		}
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: cc.Namespace, Name: resources.ConfigMapName(cc)}}
		if err := s.get(cm); err != nil {
			return err
		}
		if got := cm.Data[chatdconfig.ExpectedNodesKey]; got != fmt.Sprintf("%d\n", want.ExpectedNodes) {
			return fmt.Errorf("ConfigMap holds %q, want %d", got, want.ExpectedNodes)
		}
		return nil
	})
}

// TestScalingFollowsWhatThePodsApply: real chatd processes play the pods
// (podSim), and the operator's SizePropagation is an hour, so each scaling
// step can only start because the operator saw every pod apply the new
// cluster size. 3 → 5: the size is raised to 5 first; the operator asks
// each pod to resync (annotations on the pod, which make the kubelet
// rewrite the mounted ConfigMap); one pod's kubelet misses the resync (held
// by the test), so the operator holds the pods at 3, says so in
// Progressing, and asks that pod again; once it applies 5, the two pods are
// added. 5 → 3: one pod at a time, then the size is lowered to 3 and every
// remaining pod is asked to apply it. No chatd process is ever restarted.
func TestScalingFollowsWhatThePodsApply(t *testing.T) {
	s := envSuite(t)
	ns := s.namespace(t)
	cc := sample(t, ns)
	s.create(t, cc)
	sim := s.simulatePods(t, cc)
	s.waitCondition(t, cc, chatv1alpha1.ConditionAvailable, metav1.ConditionTrue, chatv1alpha1.ReasonAllReplicasReady)
	first := map[string]*chatdtest.Process{}
	for _, name := range []string{"chat-0", "chat-1", "chat-2"} {
		sim.applies(t, name, 3)
		first[name] = sim.process(name)
	}

	// 3 → 5, chat-2's kubelet missing every resync until released.
	sim.hold("chat-2")
	s.scaleTo(t, cc, 5)
	s.planIs(t, cc, "the size raised first", scaling.Plan{Replicas: 3, ExpectedNodes: 5})
	sim.applies(t, "chat-0", 5)
	sim.applies(t, "chat-1", 5)
	eventually(t, "the operator asks chat-2 again", func() error {
		if n := sim.droppedSyncs("chat-2"); n < 2 {
			return fmt.Errorf("%d resyncs of chat-2 dropped, want 2", n)
		}
		return nil
	})
	// chat-2 still applies 3: the pods stay at 3, and the status says why.
	s.planIs(t, cc, "held while chat-2 applies 3", scaling.Plan{Replicas: 3, ExpectedNodes: 5})
	// The condition may still carry a message written before the operator
	// saw chat-0 and chat-1 apply 5: wait for the one that names chat-2
	// alone.
	s.waitCondition(t, cc, chatv1alpha1.ConditionProgressing, metav1.ConditionTrue, chatv1alpha1.ReasonScalingUp)
	eventually(t, "Progressing to say the step waits for chat-2 alone", func() error {
		got := &chatv1alpha1.ChatCluster{}
		if err := s.admin.Get(context.Background(), client.ObjectKeyFromObject(cc), got); err != nil {
			return err
		}
		c := meta.FindStatusCondition(got.Status.Conditions, chatv1alpha1.ConditionProgressing)
		if c == nil || c.Reason != chatv1alpha1.ReasonScalingUp || !strings.Contains(c.Message, "cluster size of 5: chat-2 applies 3") {
			return fmt.Errorf("Progressing is %+v", c)
		}
		return nil
	})
	sim.release("chat-2")
	sim.applies(t, "chat-2", 5)
	s.planIs(t, cc, "the pods added once every pod applies 5", scaling.Plan{Replicas: 5, ExpectedNodes: 5})
	sim.applies(t, "chat-3", 5)
	sim.applies(t, "chat-4", 5)
	s.waitCondition(t, cc, chatv1alpha1.ConditionProgressing, metav1.ConditionFalse, chatv1alpha1.ReasonUpToDate)

	// 5 → 3: one pod at a time, then every remaining pod asked to apply 3.
	s.scaleTo(t, cc, 3)
	s.planIs(t, cc, "scaled down", scaling.Plan{Replicas: 3, ExpectedNodes: 3})
	for _, name := range []string{"chat-0", "chat-1", "chat-2"} {
		sim.applies(t, name, 3)
	}
	s.waitCondition(t, cc, chatv1alpha1.ConditionProgressing, metav1.ConditionFalse, chatv1alpha1.ReasonUpToDate)

	want := []scaling.Plan{plan(3, 3), plan(3, 5), plan(5, 5), plan(4, 5), plan(3, 5), plan(3, 3)}
	if plans := sim.seenPlans(); !slices.Equal(plans, want) {
		t.Errorf("plans %v, want %v", plans, want)
	}
	for name, proc := range first {
		if sim.process(name) != proc {
			t.Errorf("pod %s's chatd was replaced", name)
		}
	}
	sts := s.waitSts(t, cc, "StatefulSet", exists)
	if ptr.Deref(sts.Spec.Replicas, 0) != 3 {
		t.Errorf("replicas %v", sts.Spec.Replicas)
	}
}

func plan(replicas, expected int32) scaling.Plan {
	return scaling.Plan{Replicas: replicas, ExpectedNodes: expected}
}
