package controllers

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	chatv1alpha1 "github.com/ringchat/ringchat/api/v1alpha1"
	"github.com/ringchat/ringchat/controllers/chatdconfig"
	"github.com/ringchat/ringchat/controllers/internal/chatdtest"
	"github.com/ringchat/ringchat/controllers/resources"
	"github.com/ringchat/ringchat/controllers/scaling"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// simInterval is how often the pod simulation looks at the API server.
const simInterval = 50 * time.Millisecond

// podSim plays, for one ChatCluster, the parts of a cluster that envtest
// lacks, with real chatd processes:
//   - the StatefulSet controller: a Pod object per ordinal below the
//     StatefulSet's replicas (its template, controlled by the StatefulSet),
//     the pods above it deleted, and the StatefulSet's status written once
//     the pods match its spec, every pod ready;
//   - the kubelet: each pod's container is a real chatd process on loopback
//     (the pod's IP is 127.0.0.1 and its http and admin container ports the process's
//     ports), whose --expected-nodes-file holds the ConfigMap's size when the
//     pod starts, and is rewritten from the ConfigMap each time the pod
//     object changes (a kubelet sync: the kubelet refreshes projected
//     ConfigMaps when it syncs a pod), unless the test holds that pod's
//     syncs.
//
// chatd polls its file every 2 s and exports what it applies; the operator
// asks it over HTTP, as it asks pods in a cluster.
type podSim struct {
	s   *suite
	cc  *chatv1alpha1.ChatCluster
	bin string // the chatd binary
	dir string // the processes' files

	mu      sync.Mutex
	procs   map[string]*chatdtest.Process // by pod name
	synced  map[string]string             // pod name → its annotations at the last sync
	held    map[string]bool               // pod names whose syncs are dropped
	dropped map[string]int                // pod name → syncs dropped
	plans   []scaling.Plan                // every plan the StatefulSet was seen with, in order
	err     error                         // the loop's last error

	stop context.CancelFunc
	done chan struct{}
}

// simulatePods starts a podSim for cc, stopped when the test ends.
func (s *suite) simulatePods(t *testing.T, cc *chatv1alpha1.ChatCluster) *podSim {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &podSim{s: s, cc: cc, bin: chatdtest.Binary(t), dir: t.TempDir(), procs: map[string]*chatdtest.Process{}, synced: map[string]string{},
		held: map[string]bool{}, dropped: map[string]int{}, stop: cancel, done: make(chan struct{})}
	go p.run(ctx)
	t.Cleanup(func() {
		p.stop()
		<-p.done
		for name, proc := range p.procs {
			proc.Stop()
			if t.Failed() {
				t.Logf("--- chatd of pod %s ---\n%s", name, proc.Output())
			}
		}
		if err := p.lastErr(); err != nil && t.Failed() {
			t.Logf("pod simulation's last error: %v", err)
		}
	})
	return p
}

func (p *podSim) run(ctx context.Context) {
	defer close(p.done)
	tick := time.NewTicker(simInterval)
	defer tick.Stop()
	for {
		err := p.step(ctx)
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (p *podSim) lastErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// hold drops the syncs of pod name until release.
func (p *podSim) hold(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.held[name] = true
}

func (p *podSim) release(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.held, name)
}

// droppedSyncs is how many syncs of pod name were dropped.
func (p *podSim) droppedSyncs(name string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dropped[name]
}

// process is pod name's chatd, or nil.
func (p *podSim) process(name string) *chatdtest.Process {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.procs[name]
}

// seenPlans are the StatefulSet's plans as the simulation saw them, each
// once, in order.
func (p *podSim) seenPlans() []scaling.Plan {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.plans)
}

// step does one round of the StatefulSet controller's and the kubelet's
// work.
func (p *podSim) step(ctx context.Context) error {
	sts := &appsv1.StatefulSet{}
	if err := p.s.admin.Get(ctx, client.ObjectKeyFromObject(p.cc), sts); err != nil {
		return client.IgnoreNotFound(err)
	}
	plan := scaling.Current(sts)
	p.mu.Lock()
	if n := len(p.plans); n == 0 || p.plans[n-1] != plan {
		p.plans = append(p.plans, plan)
	}
	p.mu.Unlock()
	size, err := p.configMapSize(ctx)
	if err != nil {
		return err
	}
	var list corev1.PodList
	if err := p.s.admin.List(ctx, &list, client.InNamespace(p.cc.Namespace), client.MatchingLabels(p.cc.SelectorLabels())); err != nil {
		return err
	}
	pods := map[string]*corev1.Pod{}
	for i := range list.Items {
		pods[list.Items[i].Name] = &list.Items[i]
	}
	want := scaling.Replicas(sts)
	for i := range want {
		name := fmt.Sprintf("%s-%d", sts.Name, i)
		if _, ok := pods[name]; !ok {
			if err := p.startPod(ctx, sts, name, size); err != nil {
				return err
			}
		}
	}
	for name, pod := range pods {
		ordinal, err := strconv.Atoi(name[strings.LastIndexByte(name, '-')+1:])
		if err != nil || int32(ordinal) < want {
			p.sync(pod, size)
			continue
		}
		if err := p.s.admin.Delete(ctx, pod); client.IgnoreNotFound(err) != nil {
			return err
		}
		p.mu.Lock()
		proc := p.procs[name]
		delete(p.procs, name)
		delete(p.synced, name)
		p.mu.Unlock()
		if proc != nil {
			proc.Stop()
		}
	}
	if sts.Status.ObservedGeneration == sts.Generation && sts.Status.Replicas == want && sts.Status.ReadyReplicas == want {
		return nil
	}
	sts.Status = appsv1.StatefulSetStatus{
		ObservedGeneration: sts.Generation,
		Replicas:           want, ReadyReplicas: want, AvailableReplicas: want, CurrentReplicas: want, UpdatedReplicas: want,
		CurrentRevision: sts.Name + "-rev", UpdateRevision: sts.Name + "-rev",
	}
	return client.IgnoreNotFound(p.s.admin.Status().Update(ctx, sts))
}

// configMapSize is the cluster size the ConfigMap holds.
func (p *podSim) configMapSize(ctx context.Context) (int32, error) {
	cm := &corev1.ConfigMap{}
	if err := p.s.admin.Get(ctx, client.ObjectKey{Namespace: p.cc.Namespace, Name: resources.ConfigMapName(p.cc)}, cm); err != nil {
		return 0, err
	}
	v, err := strconv.Atoi(strings.TrimSpace(cm.Data[chatdconfig.ExpectedNodesKey]))
	if err != nil {
		return 0, fmt.Errorf("ConfigMap %s: %w", cm.Name, err)
	}
	return int32(v), nil
}

// startPod starts pod name's chatd with the ConfigMap's size and creates
// the pod, ready, at the process's address.
func (p *podSim) startPod(ctx context.Context, sts *appsv1.StatefulSet, name string, size int32) error {
	proc, err := chatdtest.Run(p.bin, p.dir, name, size)
	if err != nil {
		return err
	}
	tpl := sts.Spec.Template.DeepCopy()
	for i := range tpl.Spec.Containers[0].Ports {
		switch port := &tpl.Spec.Containers[0].Ports[i]; port.Name {
		case chatdconfig.HTTPPortName:
			port.ContainerPort = proc.Port()
		case chatdconfig.AdminPortName:
			port.ContainerPort = proc.AdminPort()
		}
	}
	labels := maps.Clone(tpl.Labels)
	labels[appsv1.ControllerRevisionHashLabelKey] = sts.Name + "-rev"
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: sts.Namespace, Name: name, Labels: labels, Annotations: tpl.Annotations,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "StatefulSet", Name: sts.Name, UID: sts.UID,
				Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}},
		},
		Spec: tpl.Spec,
	}
	if err := p.s.admin.Create(ctx, pod); err != nil {
		proc.Stop()
		if apierrors.IsAlreadyExists(err) {
			return nil
		}
		return fmt.Errorf("creating pod %s: %w", name, err)
	}
	pod.Status = corev1.PodStatus{
		Phase: corev1.PodRunning, PodIP: "127.0.0.1", PodIPs: []corev1.PodIP{{IP: "127.0.0.1"}},
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
	}
	if err := p.s.admin.Status().Update(ctx, pod); err != nil {
		return fmt.Errorf("writing pod %s's status: %w", name, err)
	}
	p.mu.Lock()
	p.procs[name] = proc
	p.synced[name] = annotationsKey(pod.Annotations)
	p.mu.Unlock()
	return nil
}

// sync plays the kubelet for a pod whose object may have changed: when its
// annotations differ from the last sync, its file gets the ConfigMap's size
// (unless the pod is held).
func (p *podSim) sync(pod *corev1.Pod, size int32) {
	key := annotationsKey(pod.Annotations)
	p.mu.Lock()
	defer p.mu.Unlock()
	proc := p.procs[pod.Name]
	if proc == nil || p.synced[pod.Name] == key {
		return
	}
	p.synced[pod.Name] = key
	if p.held[pod.Name] {
		p.dropped[pod.Name]++
		return
	}
	if err := proc.SetExpectedNodes(size); err != nil {
		p.err = err
	}
}

func annotationsKey(a map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(a)) {
		fmt.Fprintf(&b, "%s=%s\n", k, a[k])
	}
	return b.String()
}
