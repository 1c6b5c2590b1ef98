package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	chatv1alpha1 "github.com/ringchat/ringchat/api/v1alpha1"
	"github.com/ringchat/ringchat/chatd/certs"
	"github.com/ringchat/ringchat/controllers/chatdconfig"
	"github.com/ringchat/ringchat/controllers/peerpki"
	"github.com/ringchat/ringchat/controllers/resources"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// secretNeedles are the strings that must appear in no object but a
// Secret: every value of every Secret (whole, trimmed, line by line), their
// base64, and the digests an operator might be tempted to show (sha256 hex
// and its 16-character prefix, and the configuration hash of the value).
func secretNeedles(secrets []corev1.Secret) map[string]string {
	needles := map[string]string{}
	add := func(what, v string) {
		if len(v) >= 12 { // shorter strings match by chance (a base64 "ca.crt"?)
			needles[v] = what
		}
	}
	for _, s := range secrets {
		for k, raw := range s.Data {
			what := s.Name + "/" + k
			v := string(raw)
			sum := sha256.Sum256(raw)
			add(what, v)
			add(what+" (base64)", base64.StdEncoding.EncodeToString(raw))
			add(what+" (sha256)", hex.EncodeToString(sum[:])[:16])
			add(what+" (config hash)", chatdconfig.HashData(map[string]string{k: v})[:16])
			for _, line := range strings.Split(v, "\n") {
				line = strings.TrimSpace(line)
				if strings.HasPrefix(line, "-----") {
					continue // PEM armour lines are not secret
				}
				add(what+" (a line)", line)
				ls := sha256.Sum256([]byte(line))
				add(what+" (a line's sha256)", hex.EncodeToString(ls[:])[:16])
			}
		}
	}
	return needles
}

// TestNoSecretMaterialOutsideSecrets: for a ChatCluster that uses every
// kind of secret (a user's HS256 JWT secret and TLS key, the generated
// gossip keyring, admin token, server API key, CA and pod keys), no object the operator
// creates or writes but a Secret — ConfigMap, Services, StatefulSet and its
// pod template (arguments, environment), PDB, NetworkPolicy,
// ServiceAccount, events, the ChatCluster's status — contains any secret
// value or a digest of one. Also after the JWT secret changes (which rolls
// the pods through its resourceVersion, not its content).
func TestNoSecretMaterialOutsideSecrets(t *testing.T) {
	s := envSuite(t)
	ns := s.namespace(t)
	ctx := context.Background()
	jwt := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "jwt"},
		Data: map[string][]byte{"jwt-secret": []byte("hs256-shared-secret-of-the-issuer-0123456789")}}
	webTLS := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web-tls"}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{corev1.TLSCertKey: []byte("-----BEGIN CERTIFICATE-----\nd2ViLWNlcnQtcGxhY2Vob2xkZXI=\n-----END CERTIFICATE-----\n"),
			corev1.TLSPrivateKeyKey: []byte("-----BEGIN PRIVATE KEY-----\nd2ViLWtleS1wbGFjZWhvbGRlci0wMTIz\n-----END PRIVATE KEY-----\n")}}
	for _, o := range []client.Object{jwt, webTLS} {
		if err := s.admin.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	cc := sample(t, ns)
	cc.Spec.Auth = chatv1alpha1.AuthSpec{JWTSecretRef: &chatv1alpha1.JWTSecretKeySelector{Name: "jwt"}}
	cc.Spec.TLS = &chatv1alpha1.TLSSpec{SecretName: "web-tls"}
	cc.Spec.ServerAPI = &chatv1alpha1.ServerAPISpec{Enabled: true}
	s.create(t, cc)
	sts := s.waitSts(t, cc, "StatefulSet created", exists)
	s.setStsStatus(t, cc, 3)
	s.waitCondition(t, cc, chatv1alpha1.ConditionAvailable, metav1.ConditionTrue, chatv1alpha1.ReasonAllReplicasReady)
	scan(t, s, ns)

	// The JWT secret changes: the pods roll, and still nothing leaks.
	oldHash := sts.Spec.Template.Annotations[chatv1alpha1.AnnotationConfigHash]
	s.update(t, jwt, func() { jwt.Data["jwt-secret"] = []byte("a-new-hs256-shared-secret-9876543210-zyxw") })
	s.waitSts(t, cc, "pods rolled for the new JWT secret", func(sts *appsv1.StatefulSet) error {
		if sts.Spec.Template.Annotations[chatv1alpha1.AnnotationConfigHash] == oldHash {
			return fmt.Errorf("config hash unchanged")
		}
		return nil
	})
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: resources.ConfigMapName(cc)}}
	if err := s.get(cm); err != nil {
		t.Fatal(err)
	}
	if v := cm.Data[chatdconfig.SecretVersionsKey]; !strings.Contains(v, "resourceVersion="+jwt.ResourceVersion) {
		t.Errorf("secret-versions %q does not name the JWT Secret's resourceVersion %s", v, jwt.ResourceVersion)
	}
	scan(t, s, ns)
}

// scan fails the test when an object of ns other than a Secret holds
// secret material.
func scan(t *testing.T, s *suite, ns string) {
	t.Helper()
	ctx := context.Background()
	var secrets corev1.SecretList
	if err := s.admin.List(ctx, &secrets, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	if len(secrets.Items) < 7 { // jwt, web-tls, keyring, admin, API keys, CA, peer TLS
		t.Fatalf("%d Secrets in %s, want at least 7", len(secrets.Items), ns)
	}
	needles := secretNeedles(secrets.Items)
	lists := []client.ObjectList{
		&corev1.ConfigMapList{}, &corev1.ServiceList{}, &appsv1.StatefulSetList{}, &policyv1.PodDisruptionBudgetList{},
		&networkingv1.NetworkPolicyList{}, &corev1.ServiceAccountList{}, &eventsv1.EventList{}, &chatv1alpha1.ChatClusterList{},
	}
	seen := 0
	for _, l := range lists {
		if err := s.admin.List(ctx, l, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(l)
		if err != nil {
			t.Fatal(err)
		}
		text := string(b)
		seen += len(text)
		for needle, what := range needles {
			if strings.Contains(text, needle) {
				t.Errorf("%T holds %s", l, what)
			}
		}
	}
	if seen < 5000 {
		t.Fatalf("scanned only %d bytes of objects", seen)
	}
}

// TestPeerCertificatesForEveryPod: the peer TLS Secret holds a certificate
// per pod that chatd's own loader (chatd/certs, behind --peer-tls-*) takes
// for that pod's name and no other, under the CA the same Secret holds;
// the CA's key is not in it. Scaled up, the new pods' certificates exist
// before the StatefulSet asks for the pods.
func TestPeerCertificatesForEveryPod(t *testing.T) {
	s := envSuite(t)
	ns := s.namespace(t)
	cc := sample(t, ns)
	cc.Spec.Replicas = new(int32)
	*cc.Spec.Replicas = 5
	s.create(t, cc)
	sts := s.waitSts(t, cc, "StatefulSet created", exists)
	peer := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: cc.PeerTLSSecretName()}}
	if err := s.get(peer); err != nil {
		t.Fatal(err)
	}
	caSecret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: cc.PeerCASecretName()}}
	if err := s.get(caSecret); err != nil {
		t.Fatal(err)
	}
	if n := *sts.Spec.Replicas; int(n)*2+1 != len(peer.Data) {
		t.Fatalf("StatefulSet of %d pods, peer Secret of %d keys", n, len(peer.Data))
	}
	for _, v := range peer.Data {
		if string(v) == string(caSecret.Data[corev1.TLSPrivateKeyKey]) {
			t.Fatal("the CA's key is in the Secret the pods mount")
		}
	}
	dir := t.TempDir()
	for k, v := range peer.Data {
		if err := os.WriteFile(filepath.Join(dir, k), v, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for i := range int32(5) {
		pod := cc.PodName(i)
		files := certs.PeerFiles{Cert: filepath.Join(dir, pod+".crt"), Key: filepath.Join(dir, pod+".key"), CA: filepath.Join(dir, "ca.crt")}
		if _, err := certs.NewPeer(files, pod, time.Hour, log); err != nil {
			t.Errorf("chatd refuses %s's certificate: %v", pod, err)
		}
		if _, err := certs.NewPeer(files, cc.PodName((i+1)%5), time.Hour, log); err == nil {
			t.Errorf("chatd takes %s's certificate for %s", pod, cc.PodName((i+1)%5))
		}
	}
}

// TestPeerCertificatesRenewed: a reconcile at a time when the certificates
// fall due replaces every one of them under the same CA, keeps the other
// Secrets as they are, and asks to come back before the new ones fall due.
func TestPeerCertificatesRenewed(t *testing.T) {
	s := envSuite(t)
	ns := s.namespace(t)
	cc := sample(t, ns)
	cc.Spec.PeerTLS = chatv1alpha1.PeerTLSSpec{CertificateDuration: &metav1.Duration{Duration: 2 * time.Hour}, RenewBefore: &metav1.Duration{Duration: 30 * time.Minute}}
	s.create(t, cc)
	s.waitSts(t, cc, "StatefulSet created", exists)
	peer := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: cc.PeerTLSSecretName()}}
	if err := s.get(peer); err != nil {
		t.Fatal(err)
	}
	before := peer.DeepCopy()
	ca := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: cc.PeerCASecretName()}}
	if err := s.get(ca); err != nil {
		t.Fatal(err)
	}
	caRV := ca.ResourceVersion

	s.update(t, cc, func() { cc.Annotations = map[string]string{chatv1alpha1.AnnotationPauseReconcile: "true"} })
	s.waitCondition(t, cc, chatv1alpha1.ConditionProgressing, metav1.ConditionFalse, chatv1alpha1.ReasonPaused)
	at := time.Now()
	// Unpaused only in this reconciler's view: the stored object stays
	// paused, so the manager's reconciler does not race this one.
	r := &ChatClusterReconciler{Client: unpaused{Client: s.admin}, Scheme: s.scheme, Recorder: events.NewFakeRecorder(100), Now: func() time.Time { return at }, OperatorNamespace: suiteOperatorNamespace}
	reconcileOnce := func() reconcile.Result {
		t.Helper()
		res, err := r.Reconcile(context.Background(), reconcile.Request{NamespacedName: client.ObjectKeyFromObject(cc)})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	res := reconcileOnce()
	if err := s.get(peer); err != nil {
		t.Fatal(err)
	}
	if peer.ResourceVersion != before.ResourceVersion {
		t.Fatal("fresh certificates were rewritten")
	}
	if res.RequeueAfter <= 0 || res.RequeueAfter > 90*time.Minute+time.Minute {
		t.Fatalf("RequeueAfter %v, want the renewal in about 90 minutes", res.RequeueAfter)
	}

	at = at.Add(res.RequeueAfter)
	res = reconcileOnce()
	if err := s.get(peer); err != nil {
		t.Fatal(err)
	}
	caCA, err := peerpki.LoadCA(mustGet(t, s, ca).Data[corev1.TLSCertKey], ca.Data[corev1.TLSPrivateKeyKey])
	if err != nil {
		t.Fatal(err)
	}
	for i := range int32(3) {
		pod := cc.PodName(i)
		if string(peer.Data[pod+".crt"]) == string(before.Data[pod+".crt"]) {
			t.Errorf("%s's certificate was not renewed", pod)
		}
		if err := caCA.Check(peer.Data[pod+".crt"], peer.Data[pod+".key"], resources.PeerDNSNames(cc, i), at, at.Add(time.Hour)); err != nil {
			t.Errorf("%s's renewed certificate: %v", pod, err)
		}
	}
	if ca.ResourceVersion != caRV {
		t.Error("the CA was rewritten")
	}
	if res.RequeueAfter < 80*time.Minute {
		t.Errorf("RequeueAfter %v after the renewal, want about 90 minutes", res.RequeueAfter)
	}
}

func mustGet[T client.Object](t *testing.T, s *suite, obj T) T {
	t.Helper()
	if err := s.get(obj); err != nil {
		t.Fatal(err)
	}
	return obj
}

// unpaused reads ChatClusters without the pause annotation, so that a
// test's own reconciler acts while the manager's stays paused.
type unpaused struct{ client.Client }

func (u unpaused) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if err := u.Client.Get(ctx, key, obj, opts...); err != nil {
		return err
	}
	if cc, ok := obj.(*chatv1alpha1.ChatCluster); ok {
		delete(cc.Annotations, chatv1alpha1.AnnotationPauseReconcile)
	}
	return nil
}

// TestGossipKeyRotationByAnnotation walks the three steps through the
// manager (the operator's own RBAC: it updates its keyring Secret), and a
// step out of order, which changes nothing and says why in an event.
func TestGossipKeyRotationByAnnotation(t *testing.T) {
	s := envSuite(t)
	ns := s.namespace(t)
	cc := sample(t, ns)
	s.create(t, cc)
	s.waitSts(t, cc, "StatefulSet created", exists)
	keyring := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: cc.GossipKeyringSecretName()}}
	keys := func() []string {
		t.Helper()
		return resources.KeyringKeys(mustGet(t, s, keyring).Data[chatv1alpha1.DefaultGossipKeyringKey])
	}
	old := keys()
	if len(old) != 1 {
		t.Fatalf("keyring %q", old)
	}
	hash := mustGet(t, s, &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: cc.Name}}).Spec.Template.Annotations[chatv1alpha1.AnnotationConfigHash]
	ask := func(step string) {
		t.Helper()
		s.update(t, cc, func() { cc.Annotations = map[string]string{chatv1alpha1.AnnotationGossipKeyRotation: step} })
	}
	wait := func(what string, ok func([]string) bool) []string {
		t.Helper()
		var got []string
		eventually(t, what, func() error {
			if got = keys(); !ok(got) {
				return fmt.Errorf("keyring %d keys", len(got))
			}
			return nil
		})
		return got
	}
	ask("remove")
	s.waitEvent(t, ns, cc.Name, eventRotationRefused, "cannot remove after nothing")
	ask("add")
	added := wait("a second key", func(k []string) bool { return len(k) == 2 && k[0] == old[0] })[1]
	ask("promote")
	wait("the new key primary", func(k []string) bool { return len(k) == 2 && k[0] == added && k[1] == old[0] })
	ask("remove")
	wait("the old key removed", func(k []string) bool { return len(k) == 1 && k[0] == added })
	sts := mustGet(t, s, &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: cc.Name}})
	if sts.Spec.Template.Annotations[chatv1alpha1.AnnotationConfigHash] != hash {
		t.Error("the rotation rolled the pods: chatd re-reads the keyring, nothing needs a restart")
	}
}

// TestNetworkPolicyOnByDefaultAndSwitchable: the policy of the documented
// shape as the API server stores it, the user's peers, and no policy
// written once it is switched off (an existing one is left).
func TestNetworkPolicyOnByDefaultAndSwitchable(t *testing.T) {
	s := envSuite(t)
	ns := s.namespace(t)
	cc := sample(t, ns)
	cc.Spec.NetworkPolicy.ClientFrom = []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"ingress": "yes"}}}}
	cc.Spec.NetworkPolicy.AdminFromNamespaces = &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "monitoring"}}
	s.create(t, cc)
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: cc.NetworkPolicyName()}}
	eventually(t, "NetworkPolicy", func() error { return s.get(np) })
	checkOwned(t, np, cc)
	in := np.Spec.Ingress
	if len(in) != 3 || np.Spec.PodSelector.MatchLabels[chatv1alpha1.LabelCluster] != cc.Name {
		t.Fatalf("policy %+v", np.Spec)
	}
	port := func(r networkingv1.NetworkPolicyIngressRule) []string {
		var p []string
		for _, x := range r.Ports {
			p = append(p, fmt.Sprintf("%s/%s", *x.Protocol, x.Port.String()))
		}
		return p
	}
	if got := port(in[0]); strings.Join(got, ",") != "TCP/8080" || in[0].From[0].NamespaceSelector.MatchLabels["ingress"] != "yes" {
		t.Errorf("client rule %v from %+v", got, in[0].From)
	}
	if got := port(in[1]); strings.Join(got, ",") != "TCP/7946,UDP/7946,TCP/7947" || len(in[1].From) != 1 || in[1].From[0].NamespaceSelector != nil ||
		in[1].From[0].PodSelector.MatchLabels[chatv1alpha1.LabelCluster] != cc.Name {
		t.Errorf("peer rule %v from %+v", got, in[1].From)
	}
	if got := port(in[2]); strings.Join(got, ",") != "TCP/9090" || len(in[2].From) != 2 ||
		in[2].From[0].NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] != suiteOperatorNamespace ||
		in[2].From[1].NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] != "monitoring" {
		t.Errorf("admin rule %v from %+v", got, in[2].From)
	}
	// The client Service: the client port alone; the metrics Service: the
	// admin port alone.
	svc := mustGet(t, s, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: cc.ServiceName()}})
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].TargetPort != intstr.FromString(chatdconfig.HTTPPortName) {
		t.Errorf("client Service ports %+v", svc.Spec.Ports)
	}
	msvc := mustGet(t, s, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: cc.MetricsServiceName()}})
	if len(msvc.Spec.Ports) != 1 || msvc.Spec.Ports[0].TargetPort != intstr.FromString(chatdconfig.AdminPortName) || msvc.Labels[resources.LabelMetrics] != "true" {
		t.Errorf("metrics Service %+v", msvc)
	}

	// Switched off: the operator stops writing it.
	s.update(t, cc, func() { cc.Spec.NetworkPolicy.Enabled = new(bool) })
	eventually(t, "a reconcile of the switched-off spec", func() error {
		if err := s.get(cc); err != nil {
			return err
		}
		if cc.Status.ObservedGeneration != cc.Generation {
			return fmt.Errorf("observed generation %d of %d", cc.Status.ObservedGeneration, cc.Generation)
		}
		return nil
	})
	s.update(t, np, func() { np.Spec.Ingress = nil })
	s.update(t, cc, func() { cc.Spec.HistorySize = 2000 }) // one more reconcile
	s.waitSts(t, cc, "the reconcile of the new history size", func(sts *appsv1.StatefulSet) error { return hasArg(sts, "--history-size=2000") })
	if err := s.get(np); err != nil || len(np.Spec.Ingress) != 0 {
		t.Errorf("the switched-off policy was written again (%v): %+v", err, np.Spec.Ingress)
	}
}

// TestServerAPIKeys: spec.serverAPI.enabled makes the operator create the
// API key Secret once (one random key), mount it and pass --api-key-file;
// a key the user adds is never overwritten; turning the API off takes the
// flag and the mount away (the pods roll) and keeps the Secret, so turning
// it on again finds the keys the backend already has.
func TestServerAPIKeys(t *testing.T) {
	s := envSuite(t)
	ns := s.namespace(t)
	cc := sample(t, ns)
	cc.Spec.ServerAPI = &chatv1alpha1.ServerAPISpec{Enabled: true}
	s.create(t, cc)
	const flag = "--api-key-file=/etc/chatd/api/keys"
	hasAPI := func(want bool) func(*appsv1.StatefulSet) error {
		return func(sts *appsv1.StatefulSet) error {
			args := sts.Spec.Template.Spec.Containers[0].Args
			mounted := false
			for _, v := range sts.Spec.Template.Spec.Volumes {
				if v.Secret != nil && v.Secret.SecretName == cc.APISecretName() {
					mounted = true
				}
			}
			if slices.Contains(args, flag) != want || mounted != want {
				return fmt.Errorf("flag in %q and Secret %s mounted: %v, want %v", args, cc.APISecretName(), mounted, want)
			}
			return nil
		}
	}
	s.waitSts(t, cc, "the server API configured", hasAPI(true))
	keys := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: cc.APISecretName()}}
	eventually(t, "the API key Secret", func() error { return s.get(keys) })
	generated := resources.KeyringKeys(keys.Data[chatv1alpha1.DefaultAPIKeysKey])
	if len(generated) != 1 || len(generated[0]) < 40 {
		t.Fatalf("generated keys %q, want one random key", generated)
	}
	rotated := generated[0] + "\nsecond-key-added-by-the-user-0123456789\n"
	s.update(t, keys, func() { keys.Data[chatv1alpha1.DefaultAPIKeysKey] = []byte(rotated) })

	s.update(t, cc, func() { cc.Spec.ServerAPI.Enabled = false })
	s.waitSts(t, cc, "the server API off", hasAPI(false))
	s.update(t, cc, func() { cc.Spec.ServerAPI.Enabled = true })
	s.waitSts(t, cc, "the server API on again", hasAPI(true))
	if err := s.get(keys); err != nil {
		t.Fatal(err)
	}
	if got := string(keys.Data[chatv1alpha1.DefaultAPIKeysKey]); got != rotated {
		t.Fatalf("API keys %q after off and on, want the user's %q", got, rotated)
	}
}
