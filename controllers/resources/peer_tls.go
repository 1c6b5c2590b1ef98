package resources

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"time"

	chatv1alpha1 "github.com/ringchat/ringchat/api/v1alpha1"
	"github.com/ringchat/ringchat/controllers/chatdconfig"
	"github.com/ringchat/ringchat/controllers/peerpki"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// PeerTLSBuilder builds the Secret the pods mount at
// chatdconfig.PeerTLSMountDir: the CA's certificate (ca.crt) and, for every
// pod ordinal below Pods, the pod's certificate and key (<pod>.crt,
// <pod>.key). Each pod names its own files with $(POD_NAME) in its
// arguments: a StatefulSet's pods share one template, so a Secret per pod
// cannot be mounted, and this is the design that needs no init container
// and no change to the image. Its cost: every pod can read every pod's key
// (docs/security.md).
//
// A certificate is issued when a pod has none, when its certificate does
// not check out under the CA (names, key, chain, usages), when it expires
// within RenewBefore, or when it outlives Duration from now (the duration
// was shortened); the others are kept byte for byte, so an
// unchanged Secret is not written. chatd re-reads the files every
// --cluster-reload-interval, so a renewed certificate is used without a
// restart once the kubelet has refreshed the volume. Certificates of
// ordinals at or above Pods are removed.
type PeerTLSBuilder struct {
	CA *peerpki.CA
	// Pods is the number of pod ordinals that need a certificate: at least
	// every pod that exists or is about to.
	Pods        int32
	Now         time.Time
	Duration    time.Duration
	RenewBefore time.Duration
}

// Build names the Secret (ChatCluster.PeerTLSSecretName).
func (PeerTLSBuilder) Build(cc *chatv1alpha1.ChatCluster) client.Object {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: cc.PeerTLSSecretName(), Namespace: cc.Namespace}}
}

// PeerDNSNames are the DNS names of pod ordinal i's certificate: the pod's
// name first (chatd's --node-name, which the transport checks), then its
// names under the headless Service.
func PeerDNSNames(cc *chatv1alpha1.ChatCluster, i int32) []string {
	pod := cc.PodName(i)
	h := cc.HeadlessServiceName()
	return []string{
		pod,
		pod + "." + h,
		pod + "." + h + "." + cc.Namespace,
		pod + "." + h + "." + cc.Namespace + ".svc",
	}
}

// Update issues what is missing or due, keeps the rest, and drops the
// certificates of ordinals no longer needed.
func (b PeerTLSBuilder) Update(cc *chatv1alpha1.ChatCluster, obj client.Object) error {
	s := obj.(*corev1.Secret)
	s.Labels = withLabels(s.Labels, CommonLabels(cc))
	s.Type = corev1.SecretTypeOpaque
	want := make(map[string][]byte, 2*int(b.Pods)+1)
	want[chatdconfig.PeerCAFileName] = b.CA.CertPEM()
	renewAt := b.Now.Add(b.RenewBefore)
	for i := range b.Pods {
		pod := cc.PodName(i)
		ck, kk := chatdconfig.PeerCertFileName(pod), chatdconfig.PeerKeyFileName(pod)
		names := PeerDNSNames(cc, i)
		crt, key := s.Data[ck], s.Data[kk]
		if crt == nil || b.CA.Check(crt, key, names, b.Now, renewAt) != nil || b.outlives(crt) {
			var err error
			if crt, key, err = b.CA.IssueNode(names, b.Now, b.Duration); err != nil {
				return fmt.Errorf("issuing the certificate of %s: %w", pod, err)
			}
		}
		want[ck], want[kk] = crt, key
	}
	if !maps.EqualFunc(s.Data, want, bytes.Equal) {
		s.Data = want
	}
	return nil
}

// outlives reports whether crt expires later than a certificate issued now
// would (with a minute of slack): spec.peerTLS.certificateDuration was
// shortened, which takes effect at once rather than after the old, longer
// certificates have run down to renewBefore.
func (b PeerTLSBuilder) outlives(crt []byte) bool {
	na, err := peerpki.NotAfter(crt)
	return err == nil && na.After(b.Now.Add(b.Duration+time.Minute))
}

// PeerRenewal is when the first certificate in s (a peer TLS Secret) falls
// due for renewal, RenewBefore before it expires; false when s holds none.
func PeerRenewal(s *corev1.Secret, renewBefore time.Duration) (time.Time, bool) {
	var first time.Time
	found := false
	for _, k := range slices.Sorted(maps.Keys(s.Data)) {
		if k == chatdconfig.PeerCAFileName || len(k) < 4 || k[len(k)-4:] != ".crt" {
			continue
		}
		na, err := peerpki.NotAfter(s.Data[k])
		if err != nil {
			continue
		}
		if due := na.Add(-renewBefore); !found || due.Before(first) {
			first, found = due, true
		}
	}
	return first, found
}
