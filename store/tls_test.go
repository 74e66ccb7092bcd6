package store_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/redistest"
	"github.com/larder-dev/larder/store"
)

// testPKI is a certificate authority and certificates it signed, written as
// PEM files in a temporary folder.
type testPKI struct {
	dir                   string
	caFile                string
	serverCert, serverKey string
	clientCert, clientKey string
	otherCAFile           string
	ca                    *x509.Certificate
	caKey                 *ecdsa.PrivateKey
}

func newTestPKI(tb testing.TB) *testPKI {
	tb.Helper()
	p := &testPKI{dir: tb.TempDir()}
	p.ca, p.caKey, p.caFile = newCA(tb, p.dir, "ca")
	_, _, p.otherCAFile = newCA(tb, p.dir, "other-ca")
	p.serverCert, p.serverKey = p.issue(tb, "server", x509.ExtKeyUsageServerAuth)
	p.clientCert, p.clientKey = p.issue(tb, "client", x509.ExtKeyUsageClientAuth)
	return p
}

func newCA(tb testing.TB, dir, name string) (*x509.Certificate, *ecdsa.PrivateKey, string) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	path := filepath.Join(dir, name+".pem")
	writePEM(tb, path, "CERTIFICATE", der)
	return cert, key, path
}

// issue writes a certificate for localhost and 127.0.0.1 signed by the CA,
// and its key.
func (p *testPKI) issue(tb testing.TB, name string, usage x509.ExtKeyUsage) (certFile, keyFile string) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		tb.Fatal(err)
	}
	certFile, keyFile = filepath.Join(p.dir, name+".pem"), filepath.Join(p.dir, name+"-key.pem")
	writePEM(tb, certFile, "CERTIFICATE", der)
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	writePEM(tb, keyFile, "EC PRIVATE KEY", kder)
	return certFile, keyFile
}

func writePEM(tb testing.TB, path, typ string, der []byte) {
	tb.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		tb.Fatal(err)
	}
}

// TestRedisTLS connects to a redis-server over TLS: with the CA that signed
// its certificate, with a client certificate when it asks for one, and
// refused with another CA, a wrong server name, or no client certificate.
func TestRedisTLS(t *testing.T) {
	pki := newTestPKI(t)
	srv := redistest.StartTLS(t, redistest.TLSFiles{CertFile: pki.serverCert, KeyFile: pki.serverKey, CAFile: pki.caFile, AuthClients: true})
	ping := func(r larder.Redis) error {
		t.Helper()
		r.Addrs, r.TLS = []string{srv.TLSAddr}, true
		c, err := store.Connect(r)
		if err != nil {
			return err
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return c.Ping(ctx).Err()
	}
	for _, tc := range []struct {
		name string
		r    larder.Redis
		want string // "" for success, else part of the error
	}{
		{"mutual TLS", larder.Redis{TLSCAFile: pki.caFile, TLSCertFile: pki.clientCert, TLSKeyFile: pki.clientKey}, ""},
		{"mutual TLS by server name", larder.Redis{TLSCAFile: pki.caFile, TLSCertFile: pki.clientCert, TLSKeyFile: pki.clientKey, TLSServerName: "localhost"}, ""},
		{"another CA", larder.Redis{TLSCAFile: pki.otherCAFile, TLSCertFile: pki.clientCert, TLSKeyFile: pki.clientKey}, "certificate"},
		{"wrong server name", larder.Redis{TLSCAFile: pki.caFile, TLSCertFile: pki.clientCert, TLSKeyFile: pki.clientKey, TLSServerName: "redis.example"}, "certificate"},
		{"no client certificate", larder.Redis{TLSCAFile: pki.caFile}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ping(tc.r)
			switch {
			case tc.name == "no client certificate":
				// The server asks for a certificate the client lacks.
				if err == nil {
					t.Fatal("a client without a certificate was let in")
				}
			case tc.want == "" && err != nil:
				t.Fatalf("ping: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("ping = %v, want an error about %s", err, tc.want)
			}
		})
	}
	if _, err := store.Connect(larder.Redis{Addrs: []string{srv.TLSAddr}, TLS: true, TLSCAFile: filepath.Join(pki.dir, "missing.pem")}); err == nil || !strings.Contains(err.Error(), "tls_ca_file") {
		t.Errorf("a missing CA file: %v, want an error naming tls_ca_file", err)
	}
	if _, err := store.Connect(larder.Redis{Addrs: []string{srv.TLSAddr}, TLS: true, TLSCertFile: pki.clientCert, TLSKeyFile: pki.serverKey}); err == nil || !strings.Contains(err.Error(), "tls_cert_file") {
		t.Errorf("a key of another certificate: %v, want an error naming tls_cert_file", err)
	}
}
