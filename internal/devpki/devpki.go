// Package devpki makes throwaway certificate authorities and chatd node
// certificates for tests and local trials (hack/peercerts, make cluster).
// Keys are ECDSA P-256, made fresh every time; nothing here is meant for a
// production cluster, whose certificates come from the operator or an
// issuer such as cert-manager.
//
// A node certificate is what chatd's inter-node transport expects (see
// chatd/transport): its DNS subject alternative name is the node's name
// (--node-name) and its extended key usages are both server and client
// authentication, since every node dials and accepts.
package devpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// CA is a certificate authority that can sign node certificates.
type CA struct {
	// Cert is the CA's self-signed certificate.
	Cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// NewCA makes a self-signed CA named commonName, valid from an hour ago
// (to tolerate clock skew) for validity.
func NewCA(commonName string, validity time.Duration) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("devpki: generate CA key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("devpki: sign CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("devpki: parse CA certificate: %w", err)
	}
	return &CA{Cert: cert, key: key}, nil
}

// LoadCA reads a CA written by CertPEM and KeyPEM.
func LoadCA(certPEM, keyPEM []byte) (*CA, error) {
	cb, _ := pem.Decode(certPEM)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, errors.New("devpki: CA certificate: no CERTIFICATE block")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("devpki: CA certificate: %w", err)
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil || kb.Type != "EC PRIVATE KEY" {
		return nil, errors.New("devpki: CA key: no EC PRIVATE KEY block")
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("devpki: CA key: %w", err)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, errors.New("devpki: the CA key does not belong to the CA certificate")
	}
	return &CA{Cert: cert, key: key}, nil
}

// CertPEM returns the CA's certificate in PEM, for a CA bundle
// (--peer-tls-ca-file).
func (ca *CA) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
}

// KeyPEM returns the CA's private key in PEM.
func (ca *CA) KeyPEM() ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(ca.key)
	if err != nil {
		return nil, fmt.Errorf("devpki: encode CA key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

// Leaf describes a certificate to issue. The zero value of each field but
// DNSNames has a sensible default.
type Leaf struct {
	// DNSNames are the subject alternative names; a node certificate has
	// the node's name.
	DNSNames []string
	// NotBefore and NotAfter bound the validity; zero means an hour ago
	// and NotBefore + 24 hours.
	NotBefore, NotAfter time.Time
	// ExtKeyUsage defaults to server and client authentication.
	ExtKeyUsage []x509.ExtKeyUsage
	// Serial defaults to a random serial number.
	Serial *big.Int
}

// Issue signs a certificate for leaf with a fresh key and returns both in
// PEM (the certificate alone, not the chain: the CA is in the bundle).
func (ca *CA) Issue(leaf Leaf) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("devpki: generate key: %w", err)
	}
	serial := leaf.Serial
	if serial == nil {
		if serial, err = randomSerial(); err != nil {
			return nil, nil, err
		}
	}
	notBefore := leaf.NotBefore
	if notBefore.IsZero() {
		notBefore = time.Now().Add(-time.Hour)
	}
	notAfter := leaf.NotAfter
	if notAfter.IsZero() {
		notAfter = notBefore.Add(24 * time.Hour)
	}
	usage := leaf.ExtKeyUsage
	if usage == nil {
		usage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	}
	cn := ""
	if len(leaf.DNSNames) > 0 {
		cn = leaf.DNSNames[0]
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     leaf.DNSNames,
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  usage,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("devpki: sign certificate for %v: %w", leaf.DNSNames, err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("devpki: encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), nil
}

// IssueNode signs a node certificate for name, valid for validity from an
// hour ago.
func (ca *CA) IssueNode(name string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	now := time.Now()
	return ca.Issue(Leaf{DNSNames: []string{name}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(validity)})
}

func randomSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("devpki: serial number: %w", err)
	}
	return s.Add(s, big.NewInt(1)), nil
}
