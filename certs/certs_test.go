package certs

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"github.com/cert-manager/cert-manager/pkg/util/pki"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
)

func TestSelfSigned(t *testing.T) {
	tests := []struct {
		name        string
		dnsNames    []string
		ipAddresses []net.IP
	}{
		{name: "dns names", dnsNames: []string{"webhook.system.svc", "webhook.system.svc.cluster.local"}},
		{name: "ip addresses", ipAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")}},
		{name: "both", dnsNames: []string{"localhost"}, ipAddresses: []net.IP{net.ParseIP("127.0.0.1")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A directory that does not exist yet, to cover its creation.
			dir := filepath.Join(t.TempDir(), "certs")
			if err := SelfSigned(dir, tt.dnsNames, tt.ipAddresses, time.Hour); err != nil {
				t.Fatalf("SelfSigned: %v", err)
			}
			if err := Check(dir); err != nil {
				t.Fatalf("Check after SelfSigned: %v", err)
			}

			caPEM, err := CABundle(dir)
			if err != nil {
				t.Fatalf("CABundle: %v", err)
			}
			roots := x509.NewCertPool()
			roots.AppendCertsFromPEM(caPEM)
			leaf := readCert(t, filepath.Join(dir, CertName))
			if leaf.IsCA {
				t.Errorf("serving certificate is a CA")
			}
			var names []string
			names = append(names, tt.dnsNames...)
			for _, ip := range tt.ipAddresses {
				names = append(names, ip.String())
			}
			for _, name := range names {
				_, err := leaf.Verify(x509.VerifyOptions{
					DNSName:   name,
					Roots:     roots,
					KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
				})
				if err != nil {
					t.Errorf("verifying serving certificate for %q against %s: %v", name, CAName, err)
				}
			}
			if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "other.example", Roots: roots}); err == nil {
				t.Errorf("serving certificate verified for a name it was not issued for")
			}

			assertMode(t, dir, 0o700)
			assertMode(t, filepath.Join(dir, KeyName), 0o600)
			leftovers, _ := filepath.Glob(filepath.Join(dir, ".*tmp-*"))
			if len(leftovers) > 0 {
				t.Errorf("temporary files left behind: %v", leftovers)
			}
		})
	}
}

func TestSelfSignedRejectsBadInput(t *testing.T) {
	tests := []struct {
		name     string
		dnsNames []string
		validity time.Duration
		wantErr  string
	}{
		{name: "zero validity", dnsNames: []string{"a.test"}, validity: 0, wantErr: "validity must be positive"},
		{name: "negative validity", dnsNames: []string{"a.test"}, validity: -time.Hour, wantErr: "validity must be positive"},
		{name: "no names", validity: time.Hour, wantErr: "at least one DNS name or IP address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			err := SelfSigned(dir, tt.dnsNames, nil, tt.validity)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("SelfSigned error = %v, want one containing %q", err, tt.wantErr)
			}
			if _, err := os.Stat(filepath.Join(dir, CertName)); err == nil {
				t.Errorf("SelfSigned wrote %s despite failing", CertName)
			}
		})
	}
}

func TestCheckFails(t *testing.T) {
	tests := []struct {
		name string
		// setup prepares a directory and returns it with the substrings the
		// error must contain.
		setup func(t *testing.T) (dir string, want []string)
	}{
		{
			name: "missing directory",
			setup: func(t *testing.T) (string, []string) {
				dir := filepath.Join(t.TempDir(), "absent")
				return dir, []string{filepath.Join(dir, CertName) + " not found", filepath.Join(dir, KeyName) + " not found", "--webhook-cert-dir"}
			},
		},
		{
			name: "missing certificate",
			setup: func(t *testing.T) (string, []string) {
				dir := selfSigned(t)
				remove(t, filepath.Join(dir, CertName))
				return dir, []string{"serving certificate " + filepath.Join(dir, CertName) + " not found", "--webhook-self-signed"}
			},
		},
		{
			name: "missing key",
			setup: func(t *testing.T) (string, []string) {
				dir := selfSigned(t)
				remove(t, filepath.Join(dir, KeyName))
				return dir, []string{"serving key " + filepath.Join(dir, KeyName) + " not found", "--webhook-cert-dir"}
			},
		},
		{
			name: "certificate not PEM",
			setup: func(t *testing.T) (string, []string) {
				dir := selfSigned(t)
				if err := os.WriteFile(filepath.Join(dir, CertName), []byte("not a certificate"), 0o644); err != nil {
					t.Fatal(err)
				}
				return dir, []string{filepath.Join(dir, CertName), "not a valid pair"}
			},
		},
		{
			name: "key of another pair",
			setup: func(t *testing.T) (string, []string) {
				dir, other := selfSigned(t), selfSigned(t)
				key, err := os.ReadFile(filepath.Join(other, KeyName))
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, KeyName), key, 0o600); err != nil {
					t.Fatal(err)
				}
				return dir, []string{filepath.Join(dir, CertName), filepath.Join(dir, KeyName), "private key does not match public key"}
			},
		},
		{
			name: "expired certificate",
			setup: func(t *testing.T) (string, []string) {
				dir := t.TempDir()
				notAfter := writeExpired(t, dir)
				return dir, []string{filepath.Join(dir, CertName), "expired at " + notAfter.UTC().Format(time.RFC3339)}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, want := tt.setup(t)
			err := Check(dir)
			if err == nil {
				t.Fatalf("Check succeeded, want an error")
			}
			t.Logf("Check: %v", err)
			for _, w := range want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Check error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestCABundle(t *testing.T) {
	dir := selfSigned(t)
	got, err := CABundle(dir)
	if err != nil {
		t.Fatalf("CABundle: %v", err)
	}
	if !readCert(t, filepath.Join(dir, CAName)).IsCA || !bytes.HasPrefix(got, []byte("-----BEGIN CERTIFICATE-----")) {
		t.Errorf("CABundle returned %q, want the PEM of the CA certificate", got)
	}

	remove(t, filepath.Join(dir, CAName))
	if _, err := CABundle(dir); err == nil || !strings.Contains(err.Error(), filepath.Join(dir, CAName)+" not found") {
		t.Errorf("CABundle error = %v, want one naming the missing %s", err, CAName)
	}
}

// TestServeAndRotate serves TLS the way the manager's webhook server does,
// from a certwatcher on the directory, and checks that a new pair written by
// SelfSigned is served without a restart.
func TestServeAndRotate(t *testing.T) {
	const serverName = "webhook.system.svc"
	dir := t.TempDir()
	if err := SelfSigned(dir, []string{serverName}, []net.IP{net.ParseIP("127.0.0.1")}, time.Hour); err != nil {
		t.Fatalf("SelfSigned: %v", err)
	}
	oldCA := caBundle(t, dir)

	watcher, err := certwatcher.New(filepath.Join(dir, CertName), filepath.Join(dir, KeyName))
	if err != nil {
		t.Fatalf("certwatcher.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	watchDone := make(chan error, 1)
	go func() { watchDone <- watcher.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-watchDone:
			if err != nil {
				t.Errorf("certwatcher: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("certwatcher did not stop")
		}
	})

	addr := serveTLS(t, &tls.Config{MinVersion: tls.VersionTLS13, GetCertificate: watcher.GetCertificate})

	for _, name := range []string{serverName, "127.0.0.1"} {
		if _, err := dial(addr, name, oldCA); err != nil {
			t.Fatalf("connecting as %q with the original CA: %v", name, err)
		}
	}

	// Rotation: SelfSigned again makes a new CA and a new serving pair.
	if err := SelfSigned(dir, []string{serverName}, nil, time.Hour); err != nil {
		t.Fatalf("SelfSigned again: %v", err)
	}
	newCA := caBundle(t, dir)
	if bytes.Equal(oldCA, newCA) {
		t.Fatalf("SelfSigned kept the CA")
	}

	// fsnotify normally reports the rename within milliseconds; the deadline
	// also covers certwatcher's 10s re-read in case an event was missed.
	start := time.Now()
	deadline := start.Add(15 * time.Second)
	for {
		_, err := dial(addr, serverName, newCA)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("server still not presenting the rotated certificate after %s: %v", time.Since(start), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("rotated certificate served after %s", time.Since(start).Round(time.Millisecond))

	if _, err := dial(addr, serverName, oldCA); err == nil {
		t.Errorf("client trusting only the old CA still connects after rotation")
	}
}

// serveTLS accepts connections on 127.0.0.1 and completes the handshake on
// each, until the test ends. It returns the listening address.
func serveTLS(t *testing.T, config *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", config)
	if err != nil {
		t.Fatalf("listening: %v", err)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
	})
	go func() {
		defer close(done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
				_ = conn.(*tls.Conn).Handshake()
			}()
		}
	}()
	return ln.Addr().String()
}

// dial connects to addr trusting only caPEM and verifying serverName, and
// returns the certificate the server presented.
func dial(addr, serverName string, caPEM []byte) (*x509.Certificate, error) {
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	dialer := &tls.Dialer{
		NetDialer: &net.Dialer{Timeout: 5 * time.Second},
		Config:    &tls.Config{RootCAs: roots, ServerName: serverName, MinVersion: tls.VersionTLS13},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.(*tls.Conn).ConnectionState().PeerCertificates[0], nil
}

// writeExpired writes into dir a self-signed serving pair whose validity
// ended an hour ago, and returns its NotAfter. pki always starts a template
// at time.Now, so the template is backdated before signing.
func writeExpired(t *testing.T, dir string) time.Time {
	t.Helper()
	crt := servingCertificate([]string{"expired.test"}, nil, time.Hour)
	key, err := pki.GeneratePrivateKeyForCertificate(crt)
	if err != nil {
		t.Fatal(err)
	}
	template, err := pki.CertificateTemplateFromCertificate(crt)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Truncate(time.Second)
	template.NotBefore, template.NotAfter = now.Add(-2*time.Hour), now.Add(-time.Hour)
	pair, err := sign(template, key, cmapi.PKCS8, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := write(dir, pair.certPEM, pair); err != nil {
		t.Fatal(err)
	}
	return template.NotAfter
}

func selfSigned(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := SelfSigned(dir, []string{"webhook.test"}, nil, time.Hour); err != nil {
		t.Fatalf("SelfSigned: %v", err)
	}
	return dir
}

func caBundle(t *testing.T, dir string) []byte {
	t.Helper()
	ca, err := CABundle(dir)
	if err != nil {
		t.Fatalf("CABundle: %v", err)
	}
	return ca
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := pki.DecodeX509CertificateBytes(data)
	if err != nil {
		t.Fatalf("parsing %s: %v", path, err)
	}
	return cert
}

func remove(t *testing.T, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}

func assertMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.Mode().Perm(); got != want {
		t.Errorf("mode of %s = %o, want %o", path, got, want)
	}
}
