package status

import (
	"errors"
	"strings"
	"testing"
	"time"

	chatv1alpha1 "github.com/ringchat/ringchat/api/v1alpha1"
	"github.com/ringchat/ringchat/controllers/chatdconfig"
	"github.com/ringchat/ringchat/controllers/scaling"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

var (
	t0 = metav1.NewTime(time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC))
	t1 = metav1.NewTime(t0.Add(time.Minute))
)

func testCluster(replicas int32) *chatv1alpha1.ChatCluster {
	return &chatv1alpha1.ChatCluster{
		ObjectMeta: metav1.ObjectMeta{Namespace: "chat", Name: "prod", Generation: 4},
		Spec:       chatv1alpha1.ChatClusterSpec{Replicas: ptr.To(replicas), Auth: chatv1alpha1.AuthSpec{AllowAnonymous: true}},
	}
}

// fakeSts is a StatefulSet of spec replicas whose controller has caught up,
// every pod on the current revision, ready of them ready.
func fakeSts(spec, ready int32, image, hash string) *appsv1.StatefulSet {
	return &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Generation: 7},
		Spec: appsv1.StatefulSetSpec{
			Replicas: ptr.To(spec),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{chatv1alpha1.AnnotationConfigHash: hash}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: chatdconfig.ContainerName, Image: image}}},
			},
		},
		Status: appsv1.StatefulSetStatus{
			ObservedGeneration: 7, Replicas: spec, ReadyReplicas: ready, UpdatedReplicas: spec,
			CurrentRevision: "r1", UpdateRevision: "r1",
		},
	}
}

type wantCond struct {
	status metav1.ConditionStatus
	reason string
}

func checkConds(t *testing.T, st chatv1alpha1.ChatClusterStatus, gen int64, want map[string]wantCond) {
	t.Helper()
	for typ, w := range want {
		c := meta.FindStatusCondition(st.Conditions, typ)
		if c == nil {
			t.Errorf("no %s condition in %+v", typ, st.Conditions)
			continue
		}
		if c.Status != w.status || c.Reason != w.reason {
			t.Errorf("%s = %s/%s (%q), want %s/%s", typ, c.Status, c.Reason, c.Message, w.status, w.reason)
		}
		if c.ObservedGeneration != gen {
			t.Errorf("%s.observedGeneration = %d, want %d", typ, c.ObservedGeneration, gen)
		}
		if c.Message == "" {
			t.Errorf("%s has no message", typ)
		}
	}
}

func TestStatusBeforeTheStatefulSetExists(t *testing.T) {
	cc := testCluster(3)
	st := Compute(cc, Observed{Plan: scaling.Plan{Replicas: 3, ExpectedNodes: 3}}, t0)
	if st.ObservedGeneration != 4 || st.Selector != "app.kubernetes.io/name=chatd,chat.ringchat.io/cluster=prod" {
		t.Errorf("observedGeneration %d, selector %q", st.ObservedGeneration, st.Selector)
	}
	checkConds(t, st, 4, map[string]wantCond{
		chatv1alpha1.ConditionAvailable:   {metav1.ConditionFalse, chatv1alpha1.ReasonQuorumLost},
		chatv1alpha1.ConditionProgressing: {metav1.ConditionTrue, chatv1alpha1.ReasonCreating},
		chatv1alpha1.ConditionDegraded:    {metav1.ConditionFalse, chatv1alpha1.ReasonAsExpected},
	})
}

func TestStatusWhilePodsStartIsCreatingNotDegraded(t *testing.T) {
	cc := testCluster(3)
	sts := fakeSts(3, 1, "img:1", "h1")
	st := Compute(cc, Observed{StatefulSet: sts, Plan: scaling.Plan{Replicas: 3, ExpectedNodes: 3}}, t0)
	if st.CurrentImage != "" {
		t.Errorf("currentImage %q before every pod was ready once", st.CurrentImage)
	}
	checkConds(t, st, 4, map[string]wantCond{
		chatv1alpha1.ConditionAvailable:   {metav1.ConditionFalse, chatv1alpha1.ReasonQuorumLost},
		chatv1alpha1.ConditionProgressing: {metav1.ConditionTrue, chatv1alpha1.ReasonCreating},
		chatv1alpha1.ConditionDegraded:    {metav1.ConditionFalse, chatv1alpha1.ReasonAsExpected},
	})
}

func TestStatusAllReady(t *testing.T) {
	cc := testCluster(3)
	st := Compute(cc, Observed{StatefulSet: fakeSts(3, 3, "img:1", "h1"), Plan: scaling.Plan{Replicas: 3, ExpectedNodes: 3}}, t0)
	if st.Replicas != 3 || st.ReadyReplicas != 3 || st.CurrentImage != "img:1" || st.ConfigHash != "h1" {
		t.Errorf("status = %+v", st)
	}
	checkConds(t, st, 4, map[string]wantCond{
		chatv1alpha1.ConditionAvailable:   {metav1.ConditionTrue, chatv1alpha1.ReasonAllReplicasReady},
		chatv1alpha1.ConditionProgressing: {metav1.ConditionFalse, chatv1alpha1.ReasonUpToDate},
		chatv1alpha1.ConditionDegraded:    {metav1.ConditionFalse, chatv1alpha1.ReasonAsExpected},
	})
}

func TestStatusQuorum(t *testing.T) {
	for _, tc := range []struct {
		ready     int32
		available wantCond
	}{
		{3, wantCond{metav1.ConditionTrue, chatv1alpha1.ReasonAllReplicasReady}},
		{2, wantCond{metav1.ConditionTrue, chatv1alpha1.ReasonQuorumReady}},
		{1, wantCond{metav1.ConditionFalse, chatv1alpha1.ReasonQuorumLost}},
		{0, wantCond{metav1.ConditionFalse, chatv1alpha1.ReasonQuorumLost}},
	} {
		cc := testCluster(3)
		cc.Status = Compute(cc, Observed{StatefulSet: fakeSts(3, 3, "img:1", "h1"), Plan: scaling.Plan{Replicas: 3, ExpectedNodes: 3}}, t0)
		st := Compute(cc, Observed{StatefulSet: fakeSts(3, tc.ready, "img:1", "h1"), Plan: scaling.Plan{Replicas: 3, ExpectedNodes: 3}}, t1)
		degraded := wantCond{metav1.ConditionTrue, chatv1alpha1.ReasonReplicasNotReady}
		if tc.ready == 3 {
			degraded = wantCond{metav1.ConditionFalse, chatv1alpha1.ReasonAsExpected}
		}
		t.Logf("%d of 3 ready", tc.ready)
		checkConds(t, st, 4, map[string]wantCond{
			chatv1alpha1.ConditionAvailable: tc.available,
			chatv1alpha1.ConditionDegraded:  degraded,
		})
	}
}

func TestStatusMajorityCountsExpectedNodesWhileScalingDown(t *testing.T) {
	// 5 → 3: four pods left, still an expected size of 5; 2 ready of them is
	// no majority of 5 even though it would be one of 3.
	cc := testCluster(3)
	cc.Status = Compute(cc, Observed{StatefulSet: fakeSts(5, 5, "img:1", "h1"), Plan: scaling.Plan{Replicas: 5, ExpectedNodes: 5}}, t0)
	st := Compute(cc, Observed{StatefulSet: fakeSts(4, 2, "img:1", "h1"), Plan: scaling.Plan{Replicas: 4, ExpectedNodes: 5}}, t1)
	checkConds(t, st, 4, map[string]wantCond{
		chatv1alpha1.ConditionAvailable:   {metav1.ConditionFalse, chatv1alpha1.ReasonQuorumLost},
		chatv1alpha1.ConditionProgressing: {metav1.ConditionTrue, chatv1alpha1.ReasonScalingDown},
	})
}

func TestStatusScaledToZero(t *testing.T) {
	cc := testCluster(0)
	st := Compute(cc, Observed{StatefulSet: fakeSts(0, 0, "img:1", "h1"), Plan: scaling.Plan{Replicas: 0, ExpectedNodes: 3}}, t0)
	checkConds(t, st, 4, map[string]wantCond{
		chatv1alpha1.ConditionAvailable:   {metav1.ConditionFalse, chatv1alpha1.ReasonScaledToZero},
		chatv1alpha1.ConditionProgressing: {metav1.ConditionFalse, chatv1alpha1.ReasonUpToDate},
		chatv1alpha1.ConditionDegraded:    {metav1.ConditionFalse, chatv1alpha1.ReasonAsExpected},
	})
}

func TestStatusProgressing(t *testing.T) {
	created := func(cc *chatv1alpha1.ChatCluster) {
		cc.Status = Compute(cc, Observed{StatefulSet: fakeSts(3, 3, "img:1", "h1"), Plan: scaling.Plan{Replicas: 3, ExpectedNodes: 3}}, t0)
	}
	t.Run("scaling up", func(t *testing.T) {
		cc := testCluster(5)
		created(cc)
		sts := fakeSts(5, 3, "img:1", "h1")
		sts.Status.Replicas = 3
		st := Compute(cc, Observed{StatefulSet: sts, Plan: scaling.Plan{Replicas: 5, ExpectedNodes: 5}}, t1)
		checkConds(t, st, 4, map[string]wantCond{chatv1alpha1.ConditionProgressing: {metav1.ConditionTrue, chatv1alpha1.ReasonScalingUp}})
	})
	t.Run("scaling down", func(t *testing.T) {
		cc := testCluster(1)
		created(cc)
		st := Compute(cc, Observed{StatefulSet: fakeSts(3, 3, "img:1", "h1"), Plan: scaling.Plan{Replicas: 3, ExpectedNodes: 3}}, t1)
		checkConds(t, st, 4, map[string]wantCond{chatv1alpha1.ConditionProgressing: {metav1.ConditionTrue, chatv1alpha1.ReasonScalingDown}})
	})
	t.Run("rolling update keeps the previous image and hash", func(t *testing.T) {
		cc := testCluster(3)
		created(cc)
		sts := fakeSts(3, 3, "img:2", "h2")
		sts.Status.UpdatedReplicas, sts.Status.UpdateRevision = 1, "r2"
		st := Compute(cc, Observed{StatefulSet: sts, Plan: scaling.Plan{Replicas: 3, ExpectedNodes: 3}}, t1)
		checkConds(t, st, 4, map[string]wantCond{chatv1alpha1.ConditionProgressing: {metav1.ConditionTrue, chatv1alpha1.ReasonRollingUpdate}})
		if st.CurrentImage != "img:1" || st.ConfigHash != "h1" {
			t.Errorf("mid-rollout currentImage %q configHash %q, want the previous img:1 h1", st.CurrentImage, st.ConfigHash)
		}
		sts.Status.UpdatedReplicas, sts.Status.CurrentRevision = 3, "r2"
		st = Compute(cc, Observed{StatefulSet: sts, Plan: scaling.Plan{Replicas: 3, ExpectedNodes: 3}}, t1)
		if st.CurrentImage != "img:2" || st.ConfigHash != "h2" {
			t.Errorf("after the rollout currentImage %q configHash %q, want img:2 h2", st.CurrentImage, st.ConfigHash)
		}
	})
	t.Run("StatefulSet controller behind", func(t *testing.T) {
		cc := testCluster(3)
		created(cc)
		sts := fakeSts(3, 3, "img:1", "h1")
		sts.Generation = 8
		st := Compute(cc, Observed{StatefulSet: sts, Plan: scaling.Plan{Replicas: 3, ExpectedNodes: 3}}, t1)
		checkConds(t, st, 4, map[string]wantCond{chatv1alpha1.ConditionProgressing: {metav1.ConditionTrue, chatv1alpha1.ReasonRollingUpdate}})
	})
}

func TestStatusDegradedReasonsInOrder(t *testing.T) {
	cc := testCluster(3)
	cc.Status = Compute(cc, Observed{StatefulSet: fakeSts(3, 3, "img:1", "h1"), Plan: scaling.Plan{Replicas: 3, ExpectedNodes: 3}}, t0)
	sts := fakeSts(3, 2, "img:1", "h1")
	missing := []string{"Secret jwt (spec.auth.jwtSecretRef) not found"}

	st := Compute(cc, Observed{StatefulSet: sts, Plan: scaling.Plan{Replicas: 3, ExpectedNodes: 3}, MissingSecrets: missing, ReconcileErr: errors.New("Service prod: boom")}, t1)
	checkConds(t, st, 4, map[string]wantCond{chatv1alpha1.ConditionDegraded: {metav1.ConditionTrue, chatv1alpha1.ReasonReconcileFailed}})

	st = Compute(cc, Observed{StatefulSet: sts, Plan: scaling.Plan{Replicas: 3, ExpectedNodes: 3}, MissingSecrets: missing}, t1)
	checkConds(t, st, 4, map[string]wantCond{chatv1alpha1.ConditionDegraded: {metav1.ConditionTrue, chatv1alpha1.ReasonSecretNotFound}})
	if c := meta.FindStatusCondition(st.Conditions, chatv1alpha1.ConditionDegraded); c.Message != missing[0] {
		t.Errorf("message %q, want %q", c.Message, missing[0])
	}

	st = Compute(cc, Observed{StatefulSet: sts, Plan: scaling.Plan{Replicas: 3, ExpectedNodes: 3}}, t1)
	checkConds(t, st, 4, map[string]wantCond{chatv1alpha1.ConditionDegraded: {metav1.ConditionTrue, chatv1alpha1.ReasonReplicasNotReady}})
}

func TestStatusKeepsTransitionTimes(t *testing.T) {
	cc := testCluster(3)
	obs := Observed{StatefulSet: fakeSts(3, 3, "img:1", "h1"), Plan: scaling.Plan{Replicas: 3, ExpectedNodes: 3}}
	cc.Status = Compute(cc, obs, t0)
	same := Compute(cc, obs, t1)
	for _, c := range same.Conditions {
		if !c.LastTransitionTime.Equal(&t0) {
			t.Errorf("%s changed its lastTransitionTime to %v without changing status", c.Type, c.LastTransitionTime)
		}
	}
	cc.Generation = 5
	obs.StatefulSet = fakeSts(3, 1, "img:1", "h1")
	changed := Compute(cc, obs, t1)
	a := meta.FindStatusCondition(changed.Conditions, chatv1alpha1.ConditionAvailable)
	if a.Status != metav1.ConditionFalse || !a.LastTransitionTime.Equal(&t1) || a.ObservedGeneration != 5 {
		t.Errorf("Available after losing quorum = %+v, want False since t1 at generation 5", a)
	}
}

func TestPausedStatusOnlyTouchesProgressing(t *testing.T) {
	cc := testCluster(3)
	cc.Status = Compute(cc, Observed{StatefulSet: fakeSts(3, 3, "img:1", "h1"), Plan: scaling.Plan{Replicas: 3, ExpectedNodes: 3}}, t0)
	cc.Generation = 9 // the spec changed while paused
	st := Paused(cc, t1)
	if st.ObservedGeneration != 4 {
		t.Errorf("observedGeneration = %d, want 4: a paused operator has not acted on generation 9", st.ObservedGeneration)
	}
	p := meta.FindStatusCondition(st.Conditions, chatv1alpha1.ConditionProgressing)
	if p.Status != metav1.ConditionFalse || p.Reason != chatv1alpha1.ReasonPaused || p.ObservedGeneration != 9 {
		t.Errorf("Progressing = %+v", p)
	}
	a := meta.FindStatusCondition(st.Conditions, chatv1alpha1.ConditionAvailable)
	if a.Status != metav1.ConditionTrue || a.ObservedGeneration != 4 {
		t.Errorf("Available = %+v, want it untouched", a)
	}
}

// TestStatusSaysWhichPodsAStepWaitsFor: while a scaling step waits for pods
// to apply the new cluster size, Progressing names them; once it does not,
// or once nothing progresses, the message says nothing of it.
func TestStatusSaysWhichPodsAStepWaitsFor(t *testing.T) {
	cc := testCluster(5)
	cc.Status = Compute(cc, Observed{StatefulSet: fakeSts(3, 3, "img:1", "h1"), Plan: scaling.Plan{Replicas: 3, ExpectedNodes: 3}}, t0)
	obs := Observed{StatefulSet: fakeSts(3, 3, "img:1", "h1"), Plan: scaling.Plan{Replicas: 3, ExpectedNodes: 5}, AwaitingSize: "prod-2 applies 3"}
	st := Compute(cc, obs, t1)
	checkConds(t, st, 4, map[string]wantCond{chatv1alpha1.ConditionProgressing: {metav1.ConditionTrue, chatv1alpha1.ReasonScalingUp}})
	want := "3 of 5 pods exist; waiting for every pod to apply a cluster size of 5: prod-2 applies 3"
	if c := meta.FindStatusCondition(st.Conditions, chatv1alpha1.ConditionProgressing); c.Message != want {
		t.Errorf("Progressing message %q, want %q", c.Message, want)
	}
	obs.AwaitingSize = ""
	if c := meta.FindStatusCondition(Compute(cc, obs, t1).Conditions, chatv1alpha1.ConditionProgressing); c.Message != "3 of 5 pods exist" {
		t.Errorf("Progressing message %q once no pod is awaited", c.Message)
	}
	done := testCluster(3)
	done.Status = cc.Status
	obs.AwaitingSize = "prod-2 applies 3"
	if c := meta.FindStatusCondition(Compute(done, obs, t1).Conditions, chatv1alpha1.ConditionProgressing); c.Status != metav1.ConditionFalse || strings.Contains(c.Message, "waiting") {
		t.Errorf("Progressing %+v: an up-to-date cluster waits for nothing", c)
	}
}
