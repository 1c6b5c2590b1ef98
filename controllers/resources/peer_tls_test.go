package resources

import (
	"bytes"
	"slices"
	"testing"
	"time"

	"github.com/ringchat/ringchat/controllers/chatdconfig"
	"github.com/ringchat/ringchat/controllers/peerpki"
	corev1 "k8s.io/api/core/v1"
)

func testCA(t *testing.T) *peerpki.CA {
	t.Helper()
	s := build(t, PeerCABuilder{Now: time.Now()}, testCluster(3)).(*corev1.Secret)
	ca, err := peerpki.LoadCA(s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey])
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// TestPeerCA: a CA of type kubernetes.io/tls, never rewritten.
func TestPeerCA(t *testing.T) {
	cc := testCluster(3)
	s := build(t, PeerCABuilder{Now: time.Now()}, cc).(*corev1.Secret)
	if s.Type != corev1.SecretTypeTLS {
		t.Fatalf("type %q", s.Type)
	}
	ca, err := peerpki.LoadCA(s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey])
	if err != nil {
		t.Fatal(err)
	}
	if left := time.Until(ca.NotAfter()); left < PeerCAValidity-time.Hour {
		t.Fatalf("CA valid for %v", left)
	}
	stored(s)
	before := bytes.Clone(s.Data[corev1.TLSCertKey])
	if err := (PeerCABuilder{Now: time.Now()}).Update(cc, s); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, s.Data[corev1.TLSCertKey]) {
		t.Fatal("an existing CA was replaced")
	}
}

// TestPeerTLSIssueKeepRenewDrop: one certificate per ordinal with the pod's
// names, kept byte for byte while fresh, renewed when due, issued for a new
// ordinal, dropped for an ordinal no longer needed.
func TestPeerTLSIssueKeepRenewDrop(t *testing.T) {
	cc := testCluster(3)
	ca := testCA(t)
	now := time.Now()
	b := PeerTLSBuilder{CA: ca, Pods: 3, Now: now, Duration: 10 * time.Hour, RenewBefore: 2 * time.Hour}
	s := stored(build(t, b, cc).(*corev1.Secret))
	wantKeys := []string{"ca.crt", "prod-0.crt", "prod-0.key", "prod-1.crt", "prod-1.key", "prod-2.crt", "prod-2.key"}
	if got := sortedKeys(s.Data); !slices.Equal(got, wantKeys) {
		t.Fatalf("keys %v, want %v", got, wantKeys)
	}
	if !bytes.Equal(s.Data[chatdconfig.PeerCAFileName], ca.CertPEM()) {
		t.Fatal("ca.crt is not the CA's certificate")
	}
	for i := range int32(3) {
		pod := cc.PodName(i)
		names := PeerDNSNames(cc, i)
		if names[0] != pod || names[3] != pod+".prod-headless.chat.svc" {
			t.Fatalf("names %v", names)
		}
		if err := ca.Check(s.Data[pod+".crt"], s.Data[pod+".key"], names, now, now.Add(time.Hour)); err != nil {
			t.Fatalf("%s: %v", pod, err)
		}
	}
	first := bytes.Clone(s.Data["prod-1.crt"])

	// Fresh: unchanged. An hour later, still fresh.
	b.Now = now.Add(time.Hour)
	if err := b.Update(cc, s); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, s.Data["prod-1.crt"]) {
		t.Fatal("a fresh certificate was replaced")
	}
	// A tampered key: that pod alone gets a new pair.
	s.Data["prod-2.key"] = s.Data["prod-0.key"]
	p0 := bytes.Clone(s.Data["prod-0.crt"])
	if err := b.Update(cc, s); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(s.Data["prod-2.key"], s.Data["prod-0.key"]) || !bytes.Equal(p0, s.Data["prod-0.crt"]) {
		t.Fatal("the mismatched pair was not replaced alone")
	}
	// Due: 8h01 later less than 2h remain.
	b.Now = now.Add(8*time.Hour + time.Minute)
	if err := b.Update(cc, s); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(first, s.Data["prod-1.crt"]) {
		t.Fatal("a certificate due for renewal was kept")
	}
	na, _ := peerpki.NotAfter(s.Data["prod-1.crt"])
	if na.Before(b.Now.Add(9 * time.Hour)) {
		t.Fatalf("renewed certificate expires %v", na)
	}
	// A shorter duration applies at once: the 10-hour certificates are
	// replaced by 3-hour ones, which a later reconcile keeps.
	short := b
	short.Duration = 3 * time.Hour
	if err := short.Update(cc, s); err != nil {
		t.Fatal(err)
	}
	na, _ = peerpki.NotAfter(s.Data["prod-0.crt"])
	if na.After(short.Now.Add(3 * time.Hour)) {
		t.Fatalf("after the duration was shortened to 3h, prod-0's certificate expires %v", na.Sub(short.Now))
	}
	kept := bytes.Clone(s.Data["prod-0.crt"])
	short.Now = short.Now.Add(10 * time.Minute)
	if err := short.Update(cc, s); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(kept, s.Data["prod-0.crt"]) {
		t.Fatal("a certificate of the shortened duration was replaced again")
	}
	b.Now = short.Now

	// Scale: 4 pods, then 2.
	b.Pods = 4
	if err := b.Update(cc, s); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Data["prod-3.key"]; !ok {
		t.Fatal("no certificate for the fourth pod")
	}
	b.Pods = 2
	if err := b.Update(cc, s); err != nil {
		t.Fatal(err)
	}
	if got := sortedKeys(s.Data); !slices.Equal(got, wantKeys[:5]) {
		t.Fatalf("keys %v after scaling to 2", got)
	}
	due, ok := PeerRenewal(s, b.RenewBefore)
	if !ok || due.After(b.Now.Add(8*time.Hour)) || due.Before(b.Now) {
		t.Fatalf("renewal due %v (ok %v), now %v", due, ok, b.Now)
	}
}

func sortedKeys(m map[string][]byte) []string {
	var k []string
	for key := range m {
		k = append(k, key)
	}
	slices.Sort(k)
	return k
}
