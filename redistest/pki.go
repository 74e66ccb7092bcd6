package redistest

import (
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
	"sync/atomic"
	"testing"
	"time"
)

// PKI is a certificate authority and certificates it signed, and a second
// authority that signed none of them, written as PEM files in a temporary
// folder: for tests of TLS and mutual TLS, of Redis or of larder's own
// server. The certificates are valid from an hour ago for a day.
type PKI struct {
	// Dir is the folder of the files.
	Dir string
	// CAFile is the authority's certificate.
	CAFile string
	// ServerCert and ServerKey are a server certificate for localhost and
	// 127.0.0.1, signed by the authority, and its key.
	ServerCert, ServerKey string
	// ClientCert and ClientKey are a client certificate with the common
	// name "client", signed by the authority, and its key.
	ClientCert, ClientKey string
	// OtherCAFile is the second authority's certificate.
	OtherCAFile string

	ca, other       *x509.Certificate
	caKey, otherKey *ecdsa.PrivateKey
	serial          atomic.Int64
}

// NewPKI makes the authorities and the server and client certificates in a
// temporary folder of tb. It calls tb.Fatal when one cannot be made.
func NewPKI(tb testing.TB) *PKI {
	tb.Helper()
	p := &PKI{Dir: tb.TempDir()}
	p.ca, p.caKey, p.CAFile = p.newCA(tb, "ca")
	p.other, p.otherKey, p.OtherCAFile = p.newCA(tb, "other-ca")
	p.ServerCert, p.ServerKey = p.issue(tb, "server", "server", x509.ExtKeyUsageServerAuth, p.ca, p.caKey,
		[]string{"localhost"}, []net.IP{net.ParseIP("127.0.0.1")})
	p.ClientCert, p.ClientKey = p.ClientCertificate(tb, "client")
	return p
}

// ClientCertificate writes a client certificate with the common name cn
// and the DNS names dnsNames, signed by the authority, and its key, and
// returns their files.
func (p *PKI) ClientCertificate(tb testing.TB, cn string, dnsNames ...string) (certFile, keyFile string) {
	tb.Helper()
	return p.issue(tb, cn, cn, x509.ExtKeyUsageClientAuth, p.ca, p.caKey, dnsNames, nil)
}

// OtherClientCertificate is ClientCertificate signed by the second
// authority, which a server trusting CAFile refuses.
func (p *PKI) OtherClientCertificate(tb testing.TB, cn string) (certFile, keyFile string) {
	tb.Helper()
	return p.issue(tb, "other-"+cn, cn, x509.ExtKeyUsageClientAuth, p.other, p.otherKey, nil, nil)
}

func (p *PKI) newCA(tb testing.TB, name string) (*x509.Certificate, *ecdsa.PrivateKey, string) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(p.serial.Add(1)), Subject: pkix.Name{CommonName: name},
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
	path := filepath.Join(p.Dir, name+".pem")
	writePEM(tb, path, "CERTIFICATE", der)
	return cert, key, path
}

// issue writes a certificate with the common name cn signed by ca, and its
// key, as file.pem and file-key.pem.
func (p *PKI) issue(tb testing.TB, file, cn string, usage x509.ExtKeyUsage, ca *x509.Certificate, caKey *ecdsa.PrivateKey,
	dnsNames []string, ips []net.IP) (certFile, keyFile string) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(p.serial.Add(1)), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		DNSNames: dnsNames, IPAddresses: ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		tb.Fatal(err)
	}
	certFile, keyFile = filepath.Join(p.Dir, file+".pem"), filepath.Join(p.Dir, file+"-key.pem")
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
