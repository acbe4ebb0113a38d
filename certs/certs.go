// Package certs holds the webhook serving certificates.
//
// In a cluster, cert-manager issues them into a Secret that is mounted into
// the manager, and controller-runtime's certwatcher reloads them when
// cert-manager rotates them. For local runs and tests, SelfSigned makes a
// throwaway CA and serving pair in the same layout.
package certs

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"github.com/cert-manager/cert-manager/pkg/util/pki"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// File names in the certificate directory. They match the keys of a
// kubernetes.io/tls Secret issued by cert-manager, so the Secret can be
// mounted as the directory unchanged.
const (
	CertName = "tls.crt"
	KeyName  = "tls.key"
	CAName   = "ca.crt"
)

// fixHint says how to provide the serving pair; the flags are the manager's.
const fixHint = "mount the Secret issued by cert-manager at --webhook-cert-dir, or run with --webhook-self-signed for local use"

// SelfSigned generates a CA and a serving certificate signed by it for
// dnsNames and ipAddresses, both valid for validity, and writes CAName,
// CertName and KeyName into dir, creating it if needed. It is meant for
// local runs and tests; in a cluster cert-manager issues the certificates.
func SelfSigned(dir string, dnsNames []string, ipAddresses []net.IP, validity time.Duration) error {
	// pki starts every certificate at time.Now and, unlike cert-manager's
	// admission webhook, accepts any duration, so reject nonsense here.
	if validity <= 0 {
		return fmt.Errorf("certificate validity must be positive, got %s", validity)
	}
	if len(dnsNames) == 0 && len(ipAddresses) == 0 {
		return errors.New("serving certificate needs at least one DNS name or IP address")
	}
	ca, err := issue(caCertificate(validity), nil)
	if err != nil {
		return fmt.Errorf("generating CA: %w", err)
	}
	serving, err := issue(servingCertificate(dnsNames, ipAddresses, validity), ca)
	if err != nil {
		return fmt.Errorf("generating serving certificate: %w", err)
	}
	return write(dir, ca.certPEM, serving)
}

// Check reports whether dir holds a usable serving pair: CertName and
// KeyName exist, parse, belong together and the certificate has not
// expired. The manager calls it at startup so that a missing mount fails
// with a clear message instead of a TLS error on the first admission call.
func Check(dir string) error {
	certPath, keyPath := filepath.Join(dir, CertName), filepath.Join(dir, KeyName)
	certPEM, certErr := readFile("serving certificate", certPath)
	keyPEM, keyErr := readFile("serving key", keyPath)
	switch {
	case certErr != nil && keyErr != nil:
		return fmt.Errorf("%w, %w: %s", certErr, keyErr, fixHint)
	case certErr != nil:
		return fmt.Errorf("%w: %s", certErr, fixHint)
	case keyErr != nil:
		return fmt.Errorf("%w: %s", keyErr, fixHint)
	}

	// Same parsing as tls.LoadX509KeyPair and certwatcher, on the bytes
	// already read so both files are judged from the same snapshot.
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("serving certificate %s and key %s are not a valid pair: %w", certPath, keyPath, err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return fmt.Errorf("parsing serving certificate %s: %w", certPath, err)
	}
	if now := time.Now(); now.After(leaf.NotAfter) {
		return fmt.Errorf("serving certificate %s expired at %s: renew it (check the cert-manager Certificate's status) or rerun with --webhook-self-signed",
			certPath, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

// CABundle returns the PEM of the CA certificate in dir, for the caBundle
// of webhook configurations when running locally.
func CABundle(dir string) ([]byte, error) {
	path := filepath.Join(dir, CAName)
	data, err := readFile("CA certificate", path)
	if err != nil {
		return nil, err
	}
	// The API server rejects a caBundle without a certificate; say so here.
	if !x509.NewCertPool().AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("CA certificate %s contains no PEM certificate", path)
	}
	return data, nil
}

// caCertificate describes the throwaway CA the way a cert-manager
// Certificate for a CA issuer would.
func caCertificate(validity time.Duration) *cmapi.Certificate {
	return &cmapi.Certificate{Spec: cmapi.CertificateSpec{
		CommonName: "sandboxset-webhook-ca",
		IsCA:       true,
		Duration:   &metav1.Duration{Duration: validity},
		PrivateKey: ecdsaP256(),
		Usages:     []cmapi.KeyUsage{cmapi.UsageCertSign, cmapi.UsageDigitalSignature},
	}}
}

// servingCertificate describes the webhook serving certificate. The names
// clients check are the SANs; the common name is only a label.
func servingCertificate(dnsNames []string, ipAddresses []net.IP, validity time.Duration) *cmapi.Certificate {
	return &cmapi.Certificate{Spec: cmapi.CertificateSpec{
		CommonName:  "sandboxset-webhook",
		DNSNames:    dnsNames,
		IPAddresses: pki.IPAddressesToString(ipAddresses),
		Duration:    &metav1.Duration{Duration: validity},
		PrivateKey:  ecdsaP256(),
		Usages:      []cmapi.KeyUsage{cmapi.UsageServerAuth, cmapi.UsageDigitalSignature, cmapi.UsageKeyEncipherment},
	}}
}

func ecdsaP256() *cmapi.CertificatePrivateKey {
	return &cmapi.CertificatePrivateKey{Algorithm: cmapi.ECDSAKeyAlgorithm, Size: pki.ECCurve256, Encoding: cmapi.PKCS8}
}

// keyPair is a signed certificate with its private key, both also in PEM.
type keyPair struct {
	cert    *x509.Certificate
	certPEM []byte
	key     crypto.Signer
	keyPEM  []byte
}

// issue generates a key for crt and signs its certificate with issuer, or
// self-signs it when issuer is nil, as cert-manager's CA and selfsigned
// issuers do.
func issue(crt *cmapi.Certificate, issuer *keyPair) (*keyPair, error) {
	key, err := pki.GeneratePrivateKeyForCertificate(crt)
	if err != nil {
		return nil, fmt.Errorf("generating private key: %w", err)
	}
	template, err := pki.CertificateTemplateFromCertificate(crt)
	if err != nil {
		return nil, fmt.Errorf("building certificate template: %w", err)
	}
	return sign(template, key, crt.Spec.PrivateKey.Encoding, issuer)
}

// sign signs template for key with issuer, or self-signs it when issuer is nil.
func sign(template *x509.Certificate, key crypto.Signer, encoding cmapi.PrivateKeyEncoding, issuer *keyPair) (*keyPair, error) {
	parent, signer := template, key
	if issuer != nil {
		parent, signer = issuer.cert, issuer.key
	}
	certPEM, cert, err := pki.SignCertificate(template, parent, key.Public(), signer)
	if err != nil {
		return nil, fmt.Errorf("signing certificate: %w", err)
	}
	keyPEM, err := pki.EncodePrivateKey(key, encoding)
	if err != nil {
		return nil, fmt.Errorf("encoding private key: %w", err)
	}
	return &keyPair{cert: cert, certPEM: certPEM, key: key, keyPEM: keyPEM}, nil
}

// write stores the CA certificate and the serving pair in dir.
func write(dir string, caPEM []byte, serving *keyPair) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating certificate directory: %w", err)
	}
	// Order ca.crt, tls.key, tls.crt: tls.crt lands last, so whoever sees the new cert (certwatcher reads it before the key) also sees its CA and key; a read in between gets a mismatch certwatcher logs and retries, keeping the old pair.
	files := []struct {
		name string
		data []byte
		perm os.FileMode
	}{
		{CAName, caPEM, 0o644},
		{KeyName, serving.keyPEM, 0o600},
		{CertName, serving.certPEM, 0o644},
	}
	for _, f := range files {
		if err := writeFileAtomic(filepath.Join(dir, f.name), f.data, f.perm); err != nil {
			return err
		}
	}
	return nil
}

// writeFileAtomic replaces path by renaming a complete temporary file over
// it, so a reader sees the old or the new content, never a partial file.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	tmp := f.Name()
	// After a successful rename tmp is gone and this is a no-op.
	defer os.Remove(tmp)

	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if closeErr := f.Close(); err == nil {
		err = closeErr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// readFile reads path and names it as what in errors, without repeating the
// path that os errors already carry.
func readFile(what, path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err == nil {
		return data, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s %s not found", what, path)
	}
	var pathErr *fs.PathError
	if errors.As(err, &pathErr) {
		err = pathErr.Err
	}
	return nil, fmt.Errorf("%s %s is not readable: %w", what, path, err)
}
