package controllers

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"strconv"
	"time"

	chatv1alpha1 "github.com/ringchat/ringchat/api/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

const (
	// chatdUID is the numeric user of the chatd image (USER 65532:65532).
	chatdUID int64 = 65532

	// annotationTemplateHash, on the StatefulSet, is a digest of the pod
	// template the operator last wrote. See statefulSetBuilder.Update.
	annotationTemplateHash = "chat.ringchat.io/pod-template-hash"

	// annotationRestartedAt is what `kubectl rollout restart` sets on a pod
	// template; the operator keeps it so that it does not roll the pods a
	// second time.
	annotationRestartedAt = "kubectl.kubernetes.io/restartedAt"

	labelHostname = "kubernetes.io/hostname"
	labelZone     = "topology.kubernetes.io/zone"
)

// statefulSetBuilder builds the StatefulSet of chatd nodes.
type statefulSetBuilder struct {
	config chatdConfig
	plan   replicaPlan
	// now stamps a change of the expected cluster size.
	now time.Time
}

func (statefulSetBuilder) Build(cc *chatv1alpha1.ChatCluster) client.Object {
	return &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: cc.Name, Namespace: cc.Namespace}}
}

// Update sets replicas (per the plan), the claim retention policy and the
// pod template. The fields a StatefulSet cannot change (selector,
// serviceName, podManagementPolicy, volumeClaimTemplates) are set when it is
// created.
//
// The pod template is replaced when it differs from the desired one in a
// field the operator sets (equality.Semantic.DeepDerivative: fields the
// desired template leaves empty, which the API server defaults, are not
// compared), or when the desired template changed since the last write (the
// digest in chat.ringchat.io/pod-template-hash; this catches what
// DeepDerivative cannot see, such as a toleration removed from the spec).
// Otherwise it is left as the API server returned it, so a reconcile that
// changes nothing writes nothing.
func (b statefulSetBuilder) Update(cc *chatv1alpha1.ChatCluster, obj client.Object) error {
	sts := obj.(*appsv1.StatefulSet)
	sts.Labels = withLabels(sts.Labels, commonLabels(cc))
	if sts.ResourceVersion == "" {
		sts.Spec.Selector = &metav1.LabelSelector{MatchLabels: cc.SelectorLabels()}
		sts.Spec.ServiceName = cc.HeadlessServiceName()
		// Parallel: pods start and stop together. A chatd node is ready only
		// once it has joined others and sees a majority, so OrderedReady would
		// wait for pod 0 to be ready before creating pod 1: forever.
		sts.Spec.PodManagementPolicy = appsv1.ParallelPodManagement
		sts.Spec.VolumeClaimTemplates = volumeClaimTemplates(cc)
	}
	sts.Spec.Replicas = ptr.To(b.plan.Replicas)
	sts.Spec.PersistentVolumeClaimRetentionPolicy = claimRetentionPolicy(cc, b.plan)
	// Rolling updates replace one pod at a time, highest ordinal first, each
	// after the previous one is ready (whatever podManagementPolicy says).
	// (maxUnavailable, which the API server may default, is left alone.)
	u := &sts.Spec.UpdateStrategy
	u.Type = appsv1.RollingUpdateStatefulSetStrategyType
	if u.RollingUpdate == nil {
		u.RollingUpdate = &appsv1.RollingUpdateStatefulSetStrategy{}
	}
	u.RollingUpdate.Partition = ptr.To[int32](0)

	desired := podTemplate(cc, b.config)
	if v, ok := sts.Spec.Template.Annotations[annotationRestartedAt]; ok {
		desired.Annotations[annotationRestartedAt] = v
	}
	digest, err := templateDigest(desired)
	if err != nil {
		return err
	}
	if sts.Annotations[annotationTemplateHash] != digest ||
		!equality.Semantic.DeepDerivative(desired, sts.Spec.Template) {
		sts.Spec.Template = desired
	}
	if sts.Annotations == nil {
		sts.Annotations = map[string]string{}
	}
	sts.Annotations[annotationTemplateHash] = digest
	expected := strconv.FormatInt(int64(b.plan.ExpectedNodes), 10)
	if sts.Annotations[annotationExpectedNodes] != expected {
		sts.Annotations[annotationExpectedNodes] = expected
		sts.Annotations[annotationExpectedNodesChanged] = b.now.UTC().Format(time.RFC3339Nano)
	}
	return nil
}

// volumeClaimTemplates is the pods' volume when spec.storage is set: one
// ReadWriteOnce claim per pod (data-<name>-<ordinal>), labelled like the
// cluster's other objects (the StatefulSet controller adds the selector
// labels too, so `kubectl get pvc -l chat.ringchat.io/cluster=<name>` lists
// them). Fixed once the StatefulSet exists: growing spec.storage.size is
// applied to the claims themselves (volume_claims.go).
func volumeClaimTemplates(cc *chatv1alpha1.ChatCluster) []corev1.PersistentVolumeClaim {
	s := cc.Spec.Storage
	if s == nil {
		return nil
	}
	var class *string
	if s.StorageClassName != "" {
		class = ptr.To(s.StorageClassName)
	}
	return []corev1.PersistentVolumeClaim{{
		ObjectMeta: metav1.ObjectMeta{Name: chatv1alpha1.DataVolumeName, Labels: commonLabels(cc)},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: class,
			Resources: corev1.VolumeResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceStorage: s.Size},
			},
		},
	}}
}

// claimRetentionPolicy decides what happens to the pods' volumes.
//
//   - whenDeleted: Retain. Deleting the ChatCluster (and so its
//     StatefulSet) keeps every volume; a ChatCluster of the same name finds
//     them again. Delete them by hand (docs: controllers/README.md).
//   - whenScaled: Delete. A pod removed by a scale-down is given SIGTERM,
//     hands the rooms it owns to the nodes that stay (chatd's drain, bounded
//     by drainTimeout within terminationGracePeriodSeconds), and exits; only
//     then, the pod gone, does the garbage collector delete its claim (the
//     StatefulSet controller makes the pod the claim's owner). If the drain
//     times out, the rooms it did not hand off are still stored on their
//     other replicas (replicationFactor ≥ 2), which take them over.
//   - Except while the plan is 0 replicas: scaling to 0 stops every pod at
//     once, with nobody to hand rooms to, so the volumes are kept
//     (whenScaled: Retain) and the history comes back with the pods.
//
// Without storage there are no claims; the API server's default
// (Retain, Retain) is set so that a reconcile writes nothing.
func claimRetentionPolicy(cc *chatv1alpha1.ChatCluster, plan replicaPlan) *appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy {
	p := &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{
		WhenDeleted: appsv1.RetainPersistentVolumeClaimRetentionPolicyType,
		WhenScaled:  appsv1.RetainPersistentVolumeClaimRetentionPolicyType,
	}
	if cc.Spec.Storage != nil && plan.Replicas > 0 {
		p.WhenScaled = appsv1.DeletePersistentVolumeClaimRetentionPolicyType
	}
	return p
}

func templateDigest(t corev1.PodTemplateSpec) (string, error) {
	b, err := json.Marshal(t)
	if err != nil {
		return "", fmt.Errorf("encoding the pod template: %w", err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])[:32], nil
}

// podTemplate is the desired pod template of cc's chatd pods.
func podTemplate(cc *chatv1alpha1.ChatCluster, cfg chatdConfig) corev1.PodTemplateSpec {
	o := cc.Spec.PodTemplate
	if o == nil {
		o = &chatv1alpha1.PodTemplateOverrides{}
	}
	labels := maps.Clone(o.Labels)
	labels = withLabels(labels, commonLabels(cc)) // the operator's win (CEL forbids overlaps anyway)
	annotations := maps.Clone(o.Annotations)
	if annotations == nil {
		annotations = map[string]string{}
	}
	annotations[chatv1alpha1.AnnotationConfigHash] = cfg.Hash

	volumes, mounts := podVolumes(cc)
	securityContext := &corev1.PodSecurityContext{
		RunAsNonRoot:   ptr.To(true),
		RunAsUser:      ptr.To(chatdUID),
		RunAsGroup:     ptr.To(chatdUID),
		FSGroup:        ptr.To(chatdUID),
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
	if cc.Spec.Storage != nil {
		// The volume is chatd's group's from its first start; walking a
		// store of millions of files at every start to set it again
		// would delay each restart.
		securityContext.FSGroupChangePolicy = ptr.To(corev1.FSGroupChangeOnRootMismatch)
	}
	affinity := o.Affinity
	if affinity == nil {
		affinity = defaultAffinity(cc)
	}
	spread := o.TopologySpreadConstraints
	if spread == nil {
		spread = defaultTopologySpread(cc)
	}
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: annotations},
		Spec: corev1.PodSpec{
			ServiceAccountName:            serviceAccountName(cc),
			AutomountServiceAccountToken:  ptr.To(false),
			EnableServiceLinks:            ptr.To(false), // keep Service variables out of chatd's CHATD_ environment
			TerminationGracePeriodSeconds: ptr.To(cc.TerminationGracePeriodSeconds()),
			SecurityContext:               securityContext,
			Containers:                    []corev1.Container{chatdContainer(cc, cfg, mounts)},
			Volumes:                       volumes,
			Affinity:                      affinity,
			TopologySpreadConstraints:     spread,
			Tolerations:                   o.Tolerations,
			NodeSelector:                  o.NodeSelector,
			PriorityClassName:             o.PriorityClassName,
			ImagePullSecrets:              o.ImagePullSecrets,
		},
	}
}

func chatdContainer(cc *chatv1alpha1.ChatCluster, cfg chatdConfig, mounts []corev1.VolumeMount) corev1.Container {
	gossipKey := cc.EffectiveGossipKeyRef()
	clusterSecret := cc.EffectiveClusterSecretRef()
	env := []corev1.EnvVar{
		{Name: envPodName, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.name"}}},
		{Name: envPodIP, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "status.podIP"}}},
		{Name: envClusterSecret, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &clusterSecret}},
		{Name: envGossipKey, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &gossipKey}},
	}
	ours := map[string]bool{}
	for _, e := range env {
		ours[e.Name] = true
	}
	if o := cc.Spec.PodTemplate; o != nil {
		for _, e := range o.Env {
			if !ours[e.Name] { // the operator's variables cannot be replaced
				env = append(env, e)
			}
		}
	}
	scheme := corev1.URISchemeHTTP
	if cc.Spec.TLS != nil {
		scheme = corev1.URISchemeHTTPS // the kubelet does not verify the certificate
	}
	return corev1.Container{
		Name:            containerName,
		Image:           cc.ImageOrDefault(),
		ImagePullPolicy: cc.ImagePullPolicyOrDefault(),
		Args:            cfg.Args,
		Env:             env,
		Ports: []corev1.ContainerPort{
			{Name: httpPortName, ContainerPort: httpPort, Protocol: corev1.ProtocolTCP},
			{Name: gossipTCPPortName, ContainerPort: gossipPort, Protocol: corev1.ProtocolTCP},
			{Name: gossipUDPPortName, ContainerPort: gossipPort, Protocol: corev1.ProtocolUDP},
			{Name: rpcPortName, ContainerPort: rpcPort, Protocol: corev1.ProtocolTCP},
		},
		// Ready: joined, view settled, and a majority of the cluster seen.
		// On SIGTERM /readyz fails at once while chatd drains.
		ReadinessProbe: &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/readyz", Port: intstr.FromString(httpPortName), Scheme: scheme}},
			PeriodSeconds:    5,
			TimeoutSeconds:   3,
			SuccessThreshold: 1,
			FailureThreshold: 2,
		},
		// Alive while the process serves HTTP; generous, because restarting
		// a node moves its rooms: a minute of failures before a restart.
		LivenessProbe: &corev1.Probe{
			ProbeHandler:        corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString(httpPortName), Scheme: scheme}},
			InitialDelaySeconds: 10,
			PeriodSeconds:       10,
			TimeoutSeconds:      5,
			SuccessThreshold:    1,
			FailureThreshold:    6,
		},
		// Keep serving while the endpoint removal spreads; then SIGTERM.
		Lifecycle: &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{
			Sleep: &corev1.SleepAction{Seconds: chatv1alpha1.PreStopSleepSeconds},
		}},
		Resources:    cc.Spec.Resources,
		VolumeMounts: mounts,
		SecurityContext: &corev1.SecurityContext{
			RunAsNonRoot:             ptr.To(true),
			RunAsUser:                ptr.To(chatdUID),
			RunAsGroup:               ptr.To(chatdUID),
			ReadOnlyRootFilesystem:   ptr.To(true),
			AllowPrivilegeEscalation: ptr.To(false),
			Privileged:               ptr.To(false),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
}

// podVolumes mounts the cluster size, the JWT secret or public key (the one
// key, as a file with a fixed name: a key such as ".." is a valid Secret key
// but not a valid file name), spec.tls's Secret, and with spec.storage the
// pod's claim (its volume comes from the StatefulSet's volumeClaimTemplate,
// so only the mount is here) at chatd's --data-dir.
func podVolumes(cc *chatv1alpha1.ChatCluster) ([]corev1.Volume, []corev1.VolumeMount) {
	mode := ptr.To[int32](0o440) // owner and fsGroup (chatd's group) read
	// The cluster size, from the ConfigMap: mounted as a directory (not
	// subPath), so that the kubelet updates the file in running pods.
	vols := []corev1.Volume{{Name: clusterVolumeName, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
		LocalObjectReference: corev1.LocalObjectReference{Name: configMapName(cc)},
		Items:                []corev1.KeyToPath{{Key: configMapExpectedNodesKey, Path: expectedNodesFileName}},
		DefaultMode:          mode,
	}}}}
	mounts := []corev1.VolumeMount{{Name: clusterVolumeName, MountPath: clusterMountDir, ReadOnly: true}}
	auth := cc.Spec.Auth
	var jwt *corev1.SecretKeySelector
	var file string
	switch {
	case auth.JWTSecretRef != nil:
		s := auth.JWTSecretRef.Selector()
		jwt, file = &s, jwtSecretFileName
	case auth.JWTPublicKeySecretRef != nil:
		s := auth.JWTPublicKeySecretRef.Selector()
		jwt, file = &s, jwtPublicKeyFileName
	}
	if jwt != nil {
		vols = append(vols, corev1.Volume{Name: jwtVolumeName, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName:  jwt.Name,
			Items:       []corev1.KeyToPath{{Key: jwt.Key, Path: file}},
			DefaultMode: mode,
		}}})
		mounts = append(mounts, corev1.VolumeMount{Name: jwtVolumeName, MountPath: jwtMountDir, ReadOnly: true})
	}
	if t := cc.Spec.TLS; t != nil {
		vols = append(vols, corev1.Volume{Name: tlsVolumeName, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName:  t.SecretName,
			DefaultMode: mode,
		}}})
		mounts = append(mounts, corev1.VolumeMount{Name: tlsVolumeName, MountPath: tlsMountDir, ReadOnly: true})
	}
	if cc.Spec.Storage != nil {
		mounts = append(mounts, corev1.VolumeMount{Name: chatv1alpha1.DataVolumeName, MountPath: chatv1alpha1.DataMountPath})
	}
	return vols, mounts
}

// defaultAffinity prefers one chatd pod per Kubernetes node: losing a node
// then loses one chatd node, which replication covers.
func defaultAffinity(cc *chatv1alpha1.ChatCluster) *corev1.Affinity {
	return &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
		PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{{
			Weight: 100,
			PodAffinityTerm: corev1.PodAffinityTerm{
				LabelSelector: &metav1.LabelSelector{MatchLabels: cc.SelectorLabels()},
				TopologyKey:   labelHostname,
			},
		}},
	}}
}

// defaultTopologySpread spreads the pods across zones when the nodes have
// zone labels (ScheduleAnyway: a best effort, never a reason to stay pending).
func defaultTopologySpread(cc *chatv1alpha1.ChatCluster) []corev1.TopologySpreadConstraint {
	return []corev1.TopologySpreadConstraint{{
		MaxSkew:           1,
		TopologyKey:       labelZone,
		WhenUnsatisfiable: corev1.ScheduleAnyway,
		LabelSelector:     &metav1.LabelSelector{MatchLabels: cc.SelectorLabels()},
	}}
}
