package resources

import (
	"maps"

	chatv1alpha1 "github.com/ringchat/ringchat/api/v1alpha1"
	"github.com/ringchat/ringchat/controllers/chatdconfig"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// ChatdUID is the numeric user of the chatd image (USER 65532:65532).
const ChatdUID int64 = 65532

// Volumes of the pod template, and the node labels of the default
// scheduling.
const (
	// ClusterVolumeName projects the ConfigMap's expected-nodes key.
	ClusterVolumeName = "cluster"
	// JWTVolumeName projects the JWT secret or public key.
	JWTVolumeName = "jwt"
	// TLSVolumeName holds spec.tls's Secret.
	TLSVolumeName = "tls"
	// PeerTLSVolumeName holds the peer TLS Secret (every pod's certificate
	// and key, and the CA bundle).
	PeerTLSVolumeName = "peer-tls"
	// GossipVolumeName projects the gossip keyring.
	GossipVolumeName = "gossip"
	// AdminVolumeName projects the admin API's token.
	AdminVolumeName = "admin"
	// APIVolumeName projects the server API's keys (spec.serverAPI).
	APIVolumeName = "api"
	// HooksVolumeName projects the hooks' signing secret
	// (spec.hooks.signingSecretRef).
	HooksVolumeName = "hooks"

	// LabelHostname and LabelZone are the topology keys of the default
	// anti-affinity and spread.
	LabelHostname = "kubernetes.io/hostname"
	LabelZone     = "topology.kubernetes.io/zone"
)

// PodTemplate is the desired pod template of cc's chatd pods, configured
// with cfg.
func PodTemplate(cc *chatv1alpha1.ChatCluster, cfg chatdconfig.Config) corev1.PodTemplateSpec {
	o := cc.Spec.PodTemplate
	if o == nil {
		o = &chatv1alpha1.PodTemplateOverrides{}
	}
	labels := maps.Clone(o.Labels)
	labels = withLabels(labels, CommonLabels(cc)) // the operator's win (CEL forbids overlaps anyway)
	annotations := maps.Clone(o.Annotations)
	if annotations == nil {
		annotations = map[string]string{}
	}
	annotations[chatv1alpha1.AnnotationConfigHash] = cfg.Hash

	volumes, mounts := podVolumes(cc)
	securityContext := &corev1.PodSecurityContext{
		RunAsNonRoot:   ptr.To(true),
		RunAsUser:      ptr.To(ChatdUID),
		RunAsGroup:     ptr.To(ChatdUID),
		FSGroup:        ptr.To(ChatdUID),
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
			ServiceAccountName:            ServiceAccountName(cc),
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

func chatdContainer(cc *chatv1alpha1.ChatCluster, cfg chatdconfig.Config, mounts []corev1.VolumeMount) corev1.Container {
	// No secret in the environment: chatd reads every one from a file.
	env := []corev1.EnvVar{
		{Name: chatdconfig.EnvPodName, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.name"}}},
		{Name: chatdconfig.EnvPodIP, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "status.podIP"}}},
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
		Name:            chatdconfig.ContainerName,
		Image:           cc.ImageOrDefault(),
		ImagePullPolicy: cc.ImagePullPolicyOrDefault(),
		Args:            cfg.Args,
		Env:             env,
		Ports: []corev1.ContainerPort{
			{Name: chatdconfig.HTTPPortName, ContainerPort: chatdconfig.HTTPPort, Protocol: corev1.ProtocolTCP},
			{Name: chatdconfig.GossipTCPPortName, ContainerPort: chatdconfig.GossipPort, Protocol: corev1.ProtocolTCP},
			{Name: chatdconfig.GossipUDPPortName, ContainerPort: chatdconfig.GossipPort, Protocol: corev1.ProtocolUDP},
			{Name: chatdconfig.RPCPortName, ContainerPort: chatdconfig.RPCPort, Protocol: corev1.ProtocolTCP},
			{Name: chatdconfig.AdminPortName, ContainerPort: chatdconfig.AdminPort, Protocol: corev1.ProtocolTCP},
		},
		// Ready: joined, view settled, and a majority of the cluster seen.
		// On SIGTERM /readyz fails at once while chatd drains.
		ReadinessProbe: &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/readyz", Port: intstr.FromString(chatdconfig.HTTPPortName), Scheme: scheme}},
			PeriodSeconds:    5,
			TimeoutSeconds:   3,
			SuccessThreshold: 1,
			FailureThreshold: 2,
		},
		// Alive while the process serves HTTP; generous, because restarting
		// a node moves its rooms: a minute of failures before a restart.
		LivenessProbe: &corev1.Probe{
			ProbeHandler:        corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString(chatdconfig.HTTPPortName), Scheme: scheme}},
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
			RunAsUser:                ptr.To(ChatdUID),
			RunAsGroup:               ptr.To(ChatdUID),
			ReadOnlyRootFilesystem:   ptr.To(true),
			AllowPrivilegeEscalation: ptr.To(false),
			Privileged:               ptr.To(false),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
}

// podVolumes mounts the cluster size, the secrets chatd reads (each a
// read-only Secret volume, owner and group readable; a projected key gets a
// fixed file name, since a key such as ".." is a valid Secret key but not a
// valid file name): the JWT secret, public key or key set, spec.tls's
// Secret, the peer TLS Secret, the gossip keyring and the admin token; and
// with spec.storage the pod's claim (its volume comes from the StatefulSet's
// volumeClaimTemplate, so only the mount is here) at chatd's --data-dir.
// Every volume is a directory, never a subPath, so that the kubelet brings
// a changed Secret or ConfigMap to running pods.
func podVolumes(cc *chatv1alpha1.ChatCluster) ([]corev1.Volume, []corev1.VolumeMount) {
	mode := ptr.To[int32](0o440) // owner and fsGroup (chatd's group) read
	vols := []corev1.Volume{{Name: ClusterVolumeName, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
		LocalObjectReference: corev1.LocalObjectReference{Name: ConfigMapName(cc)},
		Items:                []corev1.KeyToPath{{Key: chatdconfig.ExpectedNodesKey, Path: chatdconfig.ExpectedNodesFileName}},
		DefaultMode:          mode,
	}}}}
	mounts := []corev1.VolumeMount{{Name: ClusterVolumeName, MountPath: chatdconfig.ClusterMountDir, ReadOnly: true}}
	secret := func(volume, dir, name string, items []corev1.KeyToPath) {
		vols = append(vols, corev1.Volume{Name: volume, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName:  name,
			Items:       items,
			DefaultMode: mode,
		}}})
		mounts = append(mounts, corev1.VolumeMount{Name: volume, MountPath: dir, ReadOnly: true})
	}
	one := func(sel corev1.SecretKeySelector, file string) (string, []corev1.KeyToPath) {
		return sel.Name, []corev1.KeyToPath{{Key: sel.Key, Path: file}}
	}
	auth := cc.Spec.Auth
	switch {
	case auth.JWTSecretRef != nil:
		name, items := one(auth.JWTSecretRef.Selector(), chatdconfig.JWTSecretFileName)
		secret(JWTVolumeName, chatdconfig.JWTMountDir, name, items)
	case auth.JWTPublicKeySecretRef != nil:
		name, items := one(auth.JWTPublicKeySecretRef.Selector(), chatdconfig.JWTPublicKeyFileName)
		secret(JWTVolumeName, chatdconfig.JWTMountDir, name, items)
	case auth.JWKSSecretRef != nil:
		name, items := one(auth.JWKSSecretRef.Selector(), chatdconfig.JWKSFileName)
		secret(JWTVolumeName, chatdconfig.JWTMountDir, name, items)
	}
	if t := cc.Spec.TLS; t != nil {
		secret(TLSVolumeName, chatdconfig.TLSMountDir, t.SecretName, nil)
	}
	secret(PeerTLSVolumeName, chatdconfig.PeerTLSMountDir, cc.PeerTLSSecretName(), nil)
	name, items := one(cc.EffectiveGossipKeyringRef(), chatdconfig.GossipKeyringFileName)
	secret(GossipVolumeName, chatdconfig.GossipMountDir, name, items)
	name, items = one(corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: cc.AdminSecretName()}, Key: chatv1alpha1.DefaultAdminTokenKey}, chatdconfig.AdminTokenFileName)
	secret(AdminVolumeName, chatdconfig.AdminMountDir, name, items)
	if cc.ServerAPIEnabled() {
		name, items = one(corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: cc.APISecretName()}, Key: chatv1alpha1.DefaultAPIKeysKey}, chatdconfig.APIKeysFileName)
		secret(APIVolumeName, chatdconfig.APIMountDir, name, items)
	}
	if h := cc.Spec.Hooks; h != nil && h.SigningSecretRef != nil {
		name, items = one(h.SigningSecretRef.Selector(), chatdconfig.HookSecretFileName)
		secret(HooksVolumeName, chatdconfig.HooksMountDir, name, items)
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
				TopologyKey:   LabelHostname,
			},
		}},
	}}
}

// defaultTopologySpread spreads the pods across zones when the nodes have
// zone labels (ScheduleAnyway: a best effort, never a reason to stay pending).
func defaultTopologySpread(cc *chatv1alpha1.ChatCluster) []corev1.TopologySpreadConstraint {
	return []corev1.TopologySpreadConstraint{{
		MaxSkew:           1,
		TopologyKey:       LabelZone,
		WhenUnsatisfiable: corev1.ScheduleAnyway,
		LabelSelector:     &metav1.LabelSelector{MatchLabels: cc.SelectorLabels()},
	}}
}
