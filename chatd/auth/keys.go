package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// MinHMACSecretLen is the shortest accepted [Config.HMACSecret], in bytes.
// RFC 7518 section 3.2 requires an HS256 key to be at least as long as the
// hash output (256 bits); shorter secrets make offline brute force of a
// captured token practical.
const MinHMACSecretLen = 32

// minRSABits is the smallest RSA modulus accepted for RS256. Keys below
// 2048 bits are considered breakable within the lifetime of a deployment
// (NIST SP 800-131A disallows them for signatures).
const minRSABits = 2048

// maxPublicKeyFileSize bounds ReadPublicKeyFile so that a misconfigured path
// (a device, a log file) fails fast instead of being slurped into memory.
// Even a certificate chain is far smaller than this.
const maxPublicKeyFileSize = 1 << 20

// ReadPublicKeyFile reads a PEM encoded public key or certificate from path,
// for use as [Config.PublicKeyPEM]. It also parses the key, so that a bad
// file is reported together with its path at startup rather than later as a
// less specific error from [New].
func ReadPublicKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("auth: read public key: %w", err)
	}
	defer f.Close()

	data, err := io.ReadAll(io.LimitReader(f, maxPublicKeyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("auth: read public key %s: %w", path, err)
	}
	if len(data) > maxPublicKeyFileSize {
		return nil, fmt.Errorf("auth: read public key %s: file larger than %d bytes", path, maxPublicKeyFileSize)
	}
	if _, err := parsePublicKeyPEM(data); err != nil {
		return nil, fmt.Errorf("auth: read public key %s: %w", path, err)
	}
	return data, nil
}

// ReadHMACSecretFile reads an HS256 shared secret from path, for use as
// [Config.HMACSecret]: the file's content with surrounding white space
// trimmed (a trailing newline is not part of the secret). It does not
// check the length; [New] refuses a secret shorter than
// [MinHMACSecretLen]. chatd's --jwt-secret-file and the load generator's
// --token-secret-file read the same file through it, so both sides sign
// and verify with the same bytes.
func ReadHMACSecretFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("auth: read HMAC secret: %w", err)
	}
	return []byte(strings.TrimSpace(string(b))), nil
}

// verifyKey is a parsed public key together with the one JWT algorithm it is
// used for. Binding each key to exactly one algorithm is what prevents
// algorithm confusion, e.g. an RSA public key being used as an HMAC secret.
type verifyKey struct {
	alg string
	key any
}

// parsePublicKeyPEM returns the first public key found in data.
//
// Blocks of unrelated types are skipped so that files carrying extra
// material (such as a certificate followed by its chain, where the leaf comes
// first) work. A private key anywhere in the input is an error: the server
// only needs the public half, and a private key on the chat server would let
// whoever compromises it mint tokens.
func parsePublicKeyPEM(data []byte) (verifyKey, error) {
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return verifyKey{}, errors.New("no PEM encoded public key or certificate found")
		}
		if strings.Contains(block.Type, "PRIVATE KEY") {
			return verifyKey{}, fmt.Errorf("PEM block %q is a private key; configure the public key only", block.Type)
		}

		var pub any
		var err error
		switch block.Type {
		case "PUBLIC KEY":
			pub, err = x509.ParsePKIXPublicKey(block.Bytes)
		case "RSA PUBLIC KEY":
			pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
		case "CERTIFICATE":
			var cert *x509.Certificate
			cert, err = x509.ParseCertificate(block.Bytes)
			if err == nil {
				pub = cert.PublicKey
			}
		default:
			continue
		}
		if err != nil {
			return verifyKey{}, fmt.Errorf("parse PEM block %q: %w", block.Type, err)
		}
		return verifyKeyFor(pub)
	}
}

// verifyKeyFor picks the JWT algorithm for a public key and rejects keys
// that are too weak or of a kind chatd does not verify.
func verifyKeyFor(pub any) (verifyKey, error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if bits := k.N.BitLen(); bits < minRSABits {
			return verifyKey{}, fmt.Errorf("RSA key has %d bits; at least %d are required", bits, minRSABits)
		}
		return verifyKey{alg: "RS256", key: k}, nil
	case *ecdsa.PublicKey:
		// ES256 is defined for P-256 only; accepting another curve here
		// would just make every token fail verification later.
		if k.Curve != elliptic.P256() {
			return verifyKey{}, fmt.Errorf("ECDSA key uses curve %s; only P-256 (ES256) is supported", k.Curve.Params().Name)
		}
		return verifyKey{alg: "ES256", key: k}, nil
	default:
		return verifyKey{}, fmt.Errorf("unsupported public key type %T; use an RSA or ECDSA P-256 key", pub)
	}
}
