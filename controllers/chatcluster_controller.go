// Package controllers is the ringchat operator: the ChatCluster reconciler
// (this file), the applier of the Helm chart's ChatCluster manifest
// (configmap_applier.go), and the manager binary (cmd/ringchat-operator).
// The objects a ChatCluster owns are built in resources, chatd's
// configuration in chatdconfig, the replica plan in scaling, the status in
// status, and the observation of the cluster size each pod applies in
// clustersize; this package does the reading and writing.
package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	chatv1alpha1 "github.com/ringchat/ringchat/api/v1alpha1"
	"github.com/ringchat/ringchat/controllers/chatdconfig"
	"github.com/ringchat/ringchat/controllers/clustersize"
	"github.com/ringchat/ringchat/controllers/resources"
	"github.com/ringchat/ringchat/controllers/scaling"
	"github.com/ringchat/ringchat/controllers/status"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/retry"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// secretRequeue is how soon a ChatCluster whose Secrets are missing is
// looked at again, besides the watch on Secrets that notices their creation.
const secretRequeue = 30 * time.Second

// resizeRequeue is how soon a ChatCluster whose volumes could not be grown
// is tried again (a StorageClass may have been given allowVolumeExpansion
// meanwhile; nothing else would say so).
const resizeRequeue = time.Minute

// Stale reads. The reconciler reads the objects it owns from the manager's
// cache, which may not have caught up with the latest write (the StatefulSet
// controller writes the StatefulSet's status all through a rollout, and the
// reconciler's own previous write may not be back yet). The API server then
// refuses the update with a conflict (or the create with AlreadyExists). That
// is no failure: apply tries again, reading again, a few times within
// staleBackoff, and if the cache still lags the reconcile stops there and
// comes back after staleRequeue (the watch usually brings it sooner), with
// no Warning event and no Degraded condition.
var staleBackoff = wait.Backoff{Steps: 5, Duration: 20 * time.Millisecond, Factor: 2, Jitter: 0.1}

const staleRequeue = time.Second

// errStaleCache marks an apply that kept meeting a stale cache.
var errStaleCache = errors.New("the cache is behind the API server")

// Scaling follows the cluster size each pod applies (see clustersize).
const (
	// DefaultSizePropagation bounds how long a changed cluster size may take
	// to reach a pod that cannot be asked: the kubelet's default ConfigMap
	// sync (its one-minute sync period plus the delay of its cache) and
	// chatd's 2 s poll.
	DefaultSizePropagation = 90 * time.Second
	// DefaultSizePoll is how often the pods are asked while a step waits.
	DefaultSizePoll = time.Second
	// DefaultSizeResync is how long a pod that was asked to resync may go on
	// applying an old size before it is asked again.
	DefaultSizeResync = 5 * time.Second
	// probeTimeout bounds one request to a pod's /metrics.
	probeTimeout = 3 * time.Second
)

// defaultProber asks pods when the reconciler is given no Prober.
var defaultProber = clustersize.NewHTTPProber(probeTimeout)

// Event reasons.
const (
	eventCreated       = "Created"
	eventUpdated       = "Updated"
	eventFailed        = chatv1alpha1.ReasonReconcileFailed
	eventSecretMissing = chatv1alpha1.ReasonSecretNotFound
	eventPaused        = "Paused"
	eventAvailable     = "Available"
	eventUnavailable   = "Unavailable"
)

// ChatClusterReconciler runs ChatClusters: for each, a ServiceAccount, a
// gossip Secret (unless the spec names its own), a ConfigMap with the chatd
// configuration, a headless and a client Service, a StatefulSet of chatd
// nodes and a PodDisruptionBudget, all owned by the ChatCluster (see the
// resources package), scaled one safe step at a time (scaling) as the pods
// apply each new cluster size (clustersize).
type ChatClusterReconciler struct {
	client.Client
	Scheme   *runtime.Scheme
	Recorder events.EventRecorder
	// Now returns the time for condition transitions and size changes;
	// time.Now when nil.
	Now func() time.Time
	// Prober asks a pod which cluster size it applies; an
	// clustersize.HTTPProber when nil.
	Prober clustersize.Prober
	// SizePropagation is how long a scaling step waits at most for a pod
	// that does not report the new cluster size (cannot be asked, say): the
	// time the kubelet takes at most to update the mounted ConfigMap by
	// itself. DefaultSizePropagation when zero.
	SizePropagation time.Duration
	// SizePoll is how often the pods are asked while a step waits for them;
	// DefaultSizePoll when zero.
	SizePoll time.Duration
	// SizeResync is how long a pod asked to apply a new size may go on
	// applying the old one before it is asked again; DefaultSizeResync when
	// zero.
	SizeResync time.Duration
	// OperatorNamespace is the namespace the operator runs in: the chatd
	// pods' NetworkPolicy lets it reach their admin listeners. Empty leaves
	// that rule out.
	OperatorNamespace string
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// The operator's permissions, generated into config/rbac/role.yaml by
// `make manifests`. Least privilege: it never deletes what it creates (the
// garbage collector does, through owner references); it reads Secrets,
// creates its own (gossip keyring, admin token, inter-node CA and
// certificates) and updates only those it controls (apply refuses any
// other: the ClusterRole cannot name them, so the code does) to renew
// certificates and rotate the gossip keyring; it writes
// ChatClusters only by server-side apply (create, patch: the chart's
// applier) and their status only by patch, and needs
// chatclusters/finalizers only because owner references with
// blockOwnerDeletion require it. The pods' PersistentVolumeClaims, which the
// StatefulSet controller creates and which outlive the ChatCluster, are only
// read and patched (one field: a grown storage request). The chatd pods are
// read (to ask each, at its IP, which cluster size it applies) and patched
// (two annotations that make the kubelet resync the pod's ConfigMap; the
// StatefulSet, which the operator writes, already decides everything else
// about them); pods/proxy is not needed.
//
// +kubebuilder:rbac:groups=chat.ringchat.io,resources=chatclusters,verbs=get;list;watch;create;patch
// +kubebuilder:rbac:groups=chat.ringchat.io,resources=chatclusters/status,verbs=patch
// +kubebuilder:rbac:groups=chat.ringchat.io,resources=chatclusters/finalizers,verbs=update
// +kubebuilder:rbac:groups=apps,resources=statefulsets,verbs=get;list;watch;create;update
// +kubebuilder:rbac:groups="",resources=services;configmaps;serviceaccounts,verbs=get;list;watch;create;update
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update
// +kubebuilder:rbac:groups=networking.k8s.io,resources=networkpolicies,verbs=get;list;watch;create;update
// +kubebuilder:rbac:groups=policy,resources=poddisruptionbudgets,verbs=get;list;watch;create;update
// +kubebuilder:rbac:groups="",resources=persistentvolumeclaims,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile brings one ChatCluster's objects to its spec and writes its status.
func (r *ChatClusterReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	cc := &chatv1alpha1.ChatCluster{}
	if err := r.Get(ctx, req.NamespacedName, cc); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !cc.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil // the garbage collector removes the rest
	}
	if cc.Annotations[chatv1alpha1.AnnotationPauseReconcile] == "true" {
		return ctrl.Result{}, r.paused(ctx, cc)
	}

	var current *appsv1.StatefulSet
	existing := &appsv1.StatefulSet{}
	switch err := r.Get(ctx, types.NamespacedName{Namespace: cc.Namespace, Name: cc.Name}, existing); {
	case err == nil:
		current = existing
	case !apierrors.IsNotFound(err):
		return ctrl.Result{}, err
	}

	secrets, err := r.checkSecrets(ctx, cc)
	if err != nil {
		return ctrl.Result{}, err
	}
	now := r.now()
	size := r.newSizeSync(cc, now)
	plan, awaits := scaling.Next(cc.DesiredReplicas(), current, false)
	if awaits {
		// The step needs every pod to apply the size the StatefulSet
		// records: ask them.
		applied, err := size.applied(ctx, current)
		if err != nil {
			return ctrl.Result{}, err
		}
		if applied {
			plan, awaits = scaling.Next(cc.DesiredReplicas(), current, true)
		}
	}
	config := chatdconfig.Desired(cc, plan.ExpectedNodes, secrets.versions)

	// The Secrets first: the pods mount them, and the peer certificates
	// are issued by the CA of the Secret applied before them.
	ca, renewal, err := r.applySecrets(ctx, cc, current, plan)
	if errors.Is(err, errStaleCache) {
		log.FromContext(ctx).V(1).Info("the cache lags behind the API server; reconciling again", "err", err)
		return ctrl.Result{RequeueAfter: staleRequeue}, nil
	}
	builders := []resources.Builder{
		resources.ConfigMapBuilder{Config: config},
		resources.HeadlessServiceBuilder{},
		resources.ClientServiceBuilder{},
		resources.MetricsServiceBuilder{},
	}
	if cc.NetworkPolicyEnabled() {
		builders = append(builders, resources.NetworkPolicyBuilder{OperatorNamespace: r.OperatorNamespace})
	}
	builders = append(builders, resources.PodDisruptionBudgetBuilder{})
	// Without its Secrets a pod cannot start: leave the StatefulSet as it
	// is (or absent) rather than roll the running pods into failure.
	switch {
	case err != nil || ca == nil:
		// applySecrets failed: recorded below, nothing else is applied.
		builders = nil
	case len(secrets.missing) == 0:
		builders = append(builders, resources.StatefulSetBuilder{Config: config, Plan: plan, Now: now})
	default:
		r.Recorder.Eventf(cc, nil, corev1.EventTypeWarning, eventSecretMissing, "Reconcile",
			"not updating the StatefulSet: %s", joinMessages(secrets.missing))
	}

	obs := status.Observed{StatefulSet: current, Plan: plan, MissingSecrets: secrets.missing, ReconcileErr: err}
	if current != nil {
		// Until it is written, the status describes the StatefulSet as it is.
		obs.Plan = scaling.Current(current)
	}
	for _, b := range builders {
		obj, err := r.apply(ctx, cc, b)
		if errors.Is(err, errStaleCache) {
			log.FromContext(ctx).V(1).Info("the cache lags behind the API server; reconciling again", "err", err)
			return ctrl.Result{RequeueAfter: staleRequeue}, nil
		}
		if err != nil {
			obs.ReconcileErr = err
			break
		}
		if sts, ok := obj.(*appsv1.StatefulSet); ok {
			obs.StatefulSet, obs.Plan = sts, plan
		}
	}
	if cc.Spec.Storage != nil && obs.ReconcileErr == nil {
		claims, err := r.dataClaims(ctx, cc)
		if err != nil {
			obs.ReconcileErr = err
		} else {
			obs.Claims, obs.ResizeErr = r.growClaims(ctx, cc, claims)
			if obs.ResizeErr != nil {
				r.Recorder.Eventf(cc, nil, corev1.EventTypeWarning, chatv1alpha1.ReasonVolumeResizeFailed, "Resize", "%v", obs.ResizeErr)
			}
		}
	}
	// A new cluster size, or one some pods do not apply yet: ask them to.
	var sizeWait time.Duration
	if current != nil && obs.ReconcileErr == nil {
		pending, wait, err := size.converge(ctx, obs.StatefulSet)
		if err != nil {
			obs.ReconcileErr = err
		}
		if pending != "" {
			sizeWait = wait
			if awaits {
				obs.AwaitingSize = pending
			}
		}
	}

	if err := r.writeStatus(ctx, cc, obs); err != nil {
		return ctrl.Result{}, errors.Join(obs.ReconcileErr, err)
	}
	if obs.ReconcileErr != nil {
		return ctrl.Result{}, obs.ReconcileErr
	}
	if len(secrets.missing) > 0 {
		return ctrl.Result{RequeueAfter: secretRequeue}, nil
	}
	if obs.ResizeErr != nil {
		return ctrl.Result{RequeueAfter: minPositive(sizeWait, resizeRequeue)}, nil
	}
	// While pods do not apply the cluster size yet, ask them again soon;
	// and come back when a certificate falls due.
	return ctrl.Result{RequeueAfter: minPositive(sizeWait, renewal)}, nil
}

// minPositive is the smaller of a and b, ignoring a zero a.
func minPositive(a, b time.Duration) time.Duration {
	if a <= 0 {
		return b
	}
	return min(a, b)
}

// apply creates or updates one object with its builder, sets cc as its
// controller, and records an event when something changed or failed. It
// refuses to take over an object of the same name that cc does not control.
// A write refused because the object was read from a stale cache is tried
// again; if the cache keeps lagging, apply returns errStaleCache and records
// no event.
func (r *ChatClusterReconciler) apply(ctx context.Context, cc *chatv1alpha1.ChatCluster, b resources.Builder) (client.Object, error) {
	var obj client.Object
	var op controllerutil.OperationResult
	err := retry.OnError(staleBackoff, isStale, func() error {
		obj = b.Build(cc)
		kind := resources.KindOf(obj)
		var err error
		op, err = controllerutil.CreateOrUpdate(ctx, r.Client, obj, func() error {
			if obj.GetResourceVersion() != "" && !metav1.IsControlledBy(obj, cc) {
				return fmt.Errorf("%s %s exists and is not controlled by this ChatCluster; rename or remove it", kind, obj.GetName())
			}
			if err := b.Update(cc, obj); err != nil {
				return err
			}
			return controllerutil.SetControllerReference(cc, obj, r.Scheme)
		})
		if isStale(err) {
			log.FromContext(ctx).V(1).Info("write refused: read from a stale cache; reading again", "kind", kind, "name", obj.GetName(), "err", err)
		}
		return err
	})
	kind := resources.KindOf(obj)
	switch {
	case isStale(err):
		return nil, fmt.Errorf("%s %s: %w: %w", kind, obj.GetName(), errStaleCache, err)
	case err != nil:
		err = fmt.Errorf("%s %s: %w", kind, obj.GetName(), err)
		r.Recorder.Eventf(cc, obj, corev1.EventTypeWarning, eventFailed, "Reconcile", "%v", err)
		return nil, err
	case op == controllerutil.OperationResultCreated:
		r.Recorder.Eventf(cc, obj, corev1.EventTypeNormal, eventCreated, "Create", "created %s %s", kind, obj.GetName())
	case op == controllerutil.OperationResultUpdated:
		r.Recorder.Eventf(cc, obj, corev1.EventTypeNormal, eventUpdated, "Update", "updated %s %s", kind, obj.GetName())
	}
	log.FromContext(ctx).V(1).Info("applied", "kind", kind, "name", obj.GetName(), "result", op)
	return obj, nil
}

// isStale reports whether the API server refused a write because it was
// based on an out-of-date read: an update with an old resourceVersion, or a
// create of an object the cache had not seen yet.
func isStale(err error) bool { return apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) }

// paused records, once, that cc is paused, and touches nothing else.
func (r *ChatClusterReconciler) paused(ctx context.Context, cc *chatv1alpha1.ChatCluster) error {
	if c := meta.FindStatusCondition(cc.Status.Conditions, chatv1alpha1.ConditionProgressing); c == nil || c.Reason != chatv1alpha1.ReasonPaused {
		r.Recorder.Eventf(cc, nil, corev1.EventTypeNormal, eventPaused, "Reconcile",
			"reconciliation paused by the annotation %s=true", chatv1alpha1.AnnotationPauseReconcile)
	}
	st := status.Paused(cc, metav1.NewTime(r.now()))
	if equality.Semantic.DeepEqual(st, cc.Status) {
		return nil
	}
	orig := cc.DeepCopy()
	cc.Status = st
	return r.Status().Patch(ctx, cc, client.MergeFrom(orig))
}

// writeStatus computes the status and writes it when it changed.
func (r *ChatClusterReconciler) writeStatus(ctx context.Context, cc *chatv1alpha1.ChatCluster, obs status.Observed) error {
	st := status.Compute(cc, obs, metav1.NewTime(r.now()))
	if equality.Semantic.DeepEqual(st, cc.Status) {
		return nil
	}
	before := meta.FindStatusCondition(cc.Status.Conditions, chatv1alpha1.ConditionAvailable)
	after := meta.FindStatusCondition(st.Conditions, chatv1alpha1.ConditionAvailable)
	orig := cc.DeepCopy()
	cc.Status = st
	if err := r.Status().Patch(ctx, cc, client.MergeFrom(orig)); err != nil {
		return fmt.Errorf("writing the status: %w", err)
	}
	if before == nil || before.Status != after.Status {
		switch {
		case after.Status == metav1.ConditionTrue:
			r.Recorder.Eventf(cc, nil, corev1.EventTypeNormal, eventAvailable, "Reconcile", "%s", after.Message)
		case before != nil:
			r.Recorder.Eventf(cc, nil, corev1.EventTypeWarning, eventUnavailable, "Reconcile", "%s", after.Message)
		}
	}
	return nil
}

func (r *ChatClusterReconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// SetupWithManager registers the reconciler with workers ChatClusters
// reconciled concurrently (one ChatCluster is never reconciled twice at
// once): it watches ChatClusters, the objects they own, the Secrets they
// refer to (metadata only: the operator keeps no Secret content in memory)
// and their pods' PersistentVolumeClaims (status.storage).
func (r *ChatClusterReconciler) SetupWithManager(mgr ctrl.Manager, workers int) error {
	return ctrl.NewControllerManagedBy(mgr).
		WithOptions(controller.Options{MaxConcurrentReconciles: max(workers, 1)}).
		For(&chatv1alpha1.ChatCluster{}, builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{},
			predicate.AnnotationChangedPredicate{},
			predicate.LabelChangedPredicate{},
		))).
		Owns(&appsv1.StatefulSet{}).
		Owns(&corev1.Service{}).
		Owns(&corev1.ConfigMap{}).
		Owns(&corev1.ServiceAccount{}).
		Owns(&policyv1.PodDisruptionBudget{}).
		Owns(&networkingv1.NetworkPolicy{}).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.clustersForSecret), builder.OnlyMetadata).
		Watches(&corev1.PersistentVolumeClaim{}, handler.EnqueueRequestsFromMapFunc(clusterOfClaim)).
		Named("chatcluster").
		Complete(r)
}

// ClientOptions are the manager's client options the reconciler expects.
// Secrets are read from the API server, not from a cache, so that the
// operator does not hold every Secret of the cluster in memory; so are pods,
// which it reads only while a scaling step waits for them.
func ClientOptions() client.Options {
	return client.Options{Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.Secret{}, &corev1.Pod{}}}}
}

// clustersForSecret maps a Secret to the ChatClusters of its namespace that
// use it: the generated gossip Secret, or one the spec refers to.
func (r *ChatClusterReconciler) clustersForSecret(ctx context.Context, obj client.Object) []reconcile.Request {
	var list chatv1alpha1.ChatClusterList
	if err := r.List(ctx, &list, client.InNamespace(obj.GetNamespace())); err != nil {
		log.FromContext(ctx).Error(err, "listing ChatClusters for a Secret", "secret", obj.GetName())
		return nil
	}
	var reqs []reconcile.Request
	for i := range list.Items {
		cc := &list.Items[i]
		for _, ref := range secretRefs(cc) {
			if ref.name == obj.GetName() {
				reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(cc)})
				break
			}
		}
	}
	return reqs
}

// clusterOfClaim maps a PersistentVolumeClaim to the ChatCluster whose pods
// use it: the StatefulSet controller labels the claims with the pods'
// selector labels.
func clusterOfClaim(_ context.Context, obj client.Object) []reconcile.Request {
	l := obj.GetLabels()
	name, ok := l[chatv1alpha1.LabelCluster]
	if !ok || l[chatv1alpha1.LabelName] != chatv1alpha1.LabelNameValue {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: obj.GetNamespace(), Name: name}}}
}
