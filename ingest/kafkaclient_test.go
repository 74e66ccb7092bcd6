package ingest_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/ingest"
	"github.com/larder-dev/larder/redistest"
	"github.com/larder-dev/larder/store"
)

// newSecureKafkaFixture returns an in-process Kafka-protocol cluster of
// the options given (TLS, SASL), a stream that reaches it with the
// settings of k, a producer with the stream's own options, and a real
// redis-server with the view published once.
func newSecureKafkaFixture(t testing.TB, cluster []kfake.Opt, k larder.KafkaTopic) *kafkaFixture {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(3, kafkaTopic)}, cluster...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	f := &kafkaFixture{srv: redistest.Start(t), brokers: c.ListenAddrs()}
	p := testProject(t)
	k.Brokers, k.Topic = f.brokers, kafkaTopic
	p.Streams = []*larder.Stream{{Name: "clicks", View: "user_last", Kafka: &k, Fields: map[string]string{"page": "url"}}}
	p.SetDefaults()
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	f.fixture = &fixture{client: f.srv.Client(), p: p, s: p.Stream("clicks")}
	// The producer reaches the cluster with the stream's own options.
	opts, err := ingest.KafkaOptions(f.s)
	if err != nil {
		t.Fatal(err)
	}
	f.prod, err = kgo.NewClient(append(opts, kgo.RecordPartitioner(kgo.ManualPartitioner()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.prod.Close)
	f.st = store.New(f.client, p.Name, store.Options{})
	f.publish(t)
	return f
}

// testPKI is an authority made for one test, a certificate it signs for
// the brokers (127.0.0.1 and kafka.test) and one for a client, each with
// its key in PEM files under a temporary folder.
type testPKI struct {
	caFile, otherCAFile string // the authority's; one that signed nothing here
	pool                *x509.CertPool
	server              tls.Certificate
	serverName          string
	certFile, keyFile   string // the client's
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	dir := t.TempDir()
	pki := &testPKI{serverName: "kafka.test", pool: x509.NewCertPool()}
	ca, caKey, caPEM := makeCert(t, nil, nil, &x509.Certificate{
		Subject: pkix.Name{CommonName: "larder test authority"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	})
	pki.pool.AddCert(ca)
	pki.caFile = writeFile(t, dir, "ca.pem", caPEM)
	_, _, otherPEM := makeCert(t, nil, nil, &x509.Certificate{
		Subject: pkix.Name{CommonName: "another authority"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign,
	})
	pki.otherCAFile = writeFile(t, dir, "other-ca.pem", otherPEM)

	_, srvKey, srvPEM := makeCert(t, ca, caKey, &x509.Certificate{
		Subject: pkix.Name{CommonName: "broker"}, DNSNames: []string{pki.serverName}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	})
	var err error
	if pki.server, err = tls.X509KeyPair(srvPEM, keyPEM(t, srvKey)); err != nil {
		t.Fatal(err)
	}
	_, cliKey, cliPEM := makeCert(t, ca, caKey, &x509.Certificate{
		Subject: pkix.Name{CommonName: "larder"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	})
	pki.certFile = writeFile(t, dir, "client.pem", cliPEM)
	pki.keyFile = writeFile(t, dir, "client-key.pem", keyPEM(t, cliKey))
	return pki
}

// listen returns the brokers' TLS settings; clients must present a
// certificate of the authority when clientCerts is set.
func (pki *testPKI) listen(clientCerts bool) *tls.Config {
	cfg := &tls.Config{Certificates: []tls.Certificate{pki.server}, MinVersion: tls.VersionTLS12}
	if clientCerts {
		cfg.ClientAuth, cfg.ClientCAs = tls.RequireAndVerifyClientCert, pki.pool
	}
	return cfg
}

// makeCert makes a certificate of tmpl, signed by parent (itself when
// nil), and returns it, its key and its PEM.
func makeCert(t testing.TB, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, tmpl *x509.Certificate) (*x509.Certificate, *ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if tmpl.SerialNumber, err = rand.Int(rand.Reader, big.NewInt(1<<62)); err != nil {
		t.Fatal(err)
	}
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func keyPEM(t testing.TB, key *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
}

func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// ingestOne produces one event, runs a consumer until it is written, and
// checks the stored row and that the group is no longer behind.
func ingestOne(t *testing.T, f *kafkaFixture) {
	t.Helper()
	f.produce(t, rec(0, "", `{"user_id": 7, "ts": `+ms(t0.Add(time.Minute))+`, "clicks": 70, "url": "/secure"}`))
	c := f.consumer(f.st, 10)
	stop := run(t, c)
	waitFor(t, "the record to be written", func() bool { return c.Counts().Written == 1 })
	stop()
	if got := f.read(t, 7)[0]; got != `70 "/secure"` {
		t.Fatalf("user 7: %s", got)
	}
	lag, err := ingest.KafkaLag(context.Background(), f.s, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if lag.Entries != 0 {
		t.Errorf("lag after the commit: %+v", lag)
	}
}

// TestKafkaIngestSASL reads a topic from brokers that ask for SASL, with
// each mechanism larder takes.
func TestKafkaIngestSASL(t *testing.T) {
	t.Parallel()
	for _, mech := range []string{larder.SASLPlain, larder.SASLScramSHA256, larder.SASLScramSHA512} {
		t.Run(mech, func(t *testing.T) {
			t.Parallel()
			f := newSecureKafkaFixture(t, []kfake.Opt{kfake.EnableSASL(), kfake.Superuser(mech, "larder", "s3cret")},
				larder.KafkaTopic{SASL: &larder.KafkaSASL{Mechanism: mech, Username: "larder", Password: "s3cret"}})
			ingestOne(t, f)
		})
	}
}

// TestKafkaIngestTLS reads a topic over TLS: brokers whose certificate an
// authority of ca_file signs, which ask for a client certificate, alone
// and with SASL/SCRAM as a managed cluster has it; server_name names the
// brokers when their address does not.
func TestKafkaIngestTLS(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	clientTLS := &larder.KafkaTLS{CAFile: pki.caFile, CertFile: pki.certFile, KeyFile: pki.keyFile}
	for _, tc := range []struct {
		name    string
		cluster []kfake.Opt
		topic   larder.KafkaTopic
	}{
		{"client certificate", []kfake.Opt{kfake.TLS(pki.listen(true))}, larder.KafkaTopic{TLS: clientTLS}},
		{"server name", []kfake.Opt{kfake.TLS(pki.listen(false))},
			larder.KafkaTopic{TLS: &larder.KafkaTLS{CAFile: pki.caFile, ServerName: pki.serverName}}},
		{"and SCRAM", []kfake.Opt{kfake.TLS(pki.listen(true)), kfake.EnableSASL(), kfake.Superuser(larder.SASLScramSHA512, "larder", "s3cret")},
			larder.KafkaTopic{TLS: clientTLS, SASL: &larder.KafkaSASL{Mechanism: larder.SASLScramSHA512, Username: "larder", Password: "s3cret"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ingestOne(t, newSecureKafkaFixture(t, tc.cluster, tc.topic))
		})
	}
}

// TestKafkaRefused stops a consumer, soon, whose password the brokers
// refuse or whose authority did not sign their certificate, with an error
// that names the stream, the broker and the settings to check; the lag
// reader says the same.
func TestKafkaRefused(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	for _, tc := range []struct {
		name    string
		cluster []kfake.Opt
		topic   larder.KafkaTopic
		want    []string
	}{
		{"wrong password", []kfake.Opt{kfake.EnableSASL(), kfake.Superuser(larder.SASLScramSHA256, "larder", "right")},
			larder.KafkaTopic{SASL: &larder.KafkaSASL{Mechanism: larder.SASLScramSHA256, Username: "larder", Password: "wrong", PasswordEnv: "KAFKA_PASSWORD"}},
			[]string{"refused user larder (SASL SCRAM-SHA-256)", "KAFKA_PASSWORD (kafka.sasl.password_env)"}},
		{"wrong PLAIN password", []kfake.Opt{kfake.EnableSASL(), kfake.Superuser(larder.SASLPlain, "larder", "right")},
			larder.KafkaTopic{SASL: &larder.KafkaSASL{Mechanism: larder.SASLPlain, Username: "larder", Password: "wrong"}},
			[]string{"refused user larder (SASL PLAIN)", "check kafka.sasl.username and the password"}},
		{"other authority", []kfake.Opt{kfake.TLS(pki.listen(false))},
			larder.KafkaTopic{TLS: &larder.KafkaTLS{CAFile: pki.otherCAFile}},
			[]string{"certificate is not trusted", "kafka.tls.ca_file"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newSecureKafkaFixture(t, tc.cluster, tc.topic)
			s := f.s
			want := append([]string{"stream clicks", "kafka broker " + f.brokers[0]}, tc.want...)

			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			err := f.consumer(f.st, 10).Run(ctx)
			if ctx.Err() != nil {
				t.Fatalf("Run did not return within 20s (err %v)", err)
			}
			checkError(t, "Run", err, want)

			_, err = ingest.KafkaLag(ctx, s, time.Now())
			if ctx.Err() != nil {
				t.Fatalf("KafkaLag did not return within 20s (err %v)", err)
			}
			checkError(t, "KafkaLag", err, want)
		})
	}
}

func checkError(t *testing.T, what string, err error, want []string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error", what)
	}
	t.Logf("%s: %v", what, err)
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%s: %v\nwant it to say %q", what, err, w)
		}
	}
}

// TestKafkaOptionsFiles names the setting of a TLS file that cannot be
// used, and the file.
func TestKafkaOptionsFiles(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	dir := t.TempDir()
	notPEM := writeFile(t, dir, "not.pem", []byte("hello"))
	missing := filepath.Join(dir, "missing.pem")
	for _, tc := range []struct {
		name  string
		tls   larder.KafkaTLS
		field string
		want  string
	}{
		{"missing CA file", larder.KafkaTLS{CAFile: missing}, "kafka.tls.ca_file", "open " + missing + ": no such file or directory"},
		{"CA file of no PEM", larder.KafkaTLS{CAFile: notPEM}, "kafka.tls.ca_file", notPEM + " holds no PEM certificate"},
		{"key of another certificate", larder.KafkaTLS{CertFile: pki.certFile, KeyFile: pki.caFile}, "kafka.tls.cert_file", pki.certFile + " with key_file " + pki.caFile},
		{"missing key", larder.KafkaTLS{CertFile: pki.certFile, KeyFile: missing}, "kafka.tls.cert_file", "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &larder.Stream{Name: "orders", Kafka: &larder.KafkaTopic{Brokers: []string{"k:9092"}, Topic: "o", TLS: &tc.tls}}
			_, err := ingest.KafkaOptions(s)
			var se *ingest.KafkaSettingError
			if !errors.As(err, &se) || se.Stream != "orders" || se.Field != tc.field || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("KafkaOptions = %v; want a setting error of stream orders at %s saying %q", err, tc.field, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "stream orders: "+tc.field+": ") {
				t.Errorf("error %q does not start with the stream and the setting", err)
			}
		})
	}
	good := &larder.Stream{Name: "orders", Kafka: &larder.KafkaTopic{Brokers: []string{"k:9092"}, Topic: "o",
		TLS:  &larder.KafkaTLS{CAFile: pki.caFile, CertFile: pki.certFile, KeyFile: pki.keyFile},
		SASL: &larder.KafkaSASL{Mechanism: larder.SASLScramSHA256, Username: "u", Password: "p"}}}
	if _, err := ingest.KafkaOptions(good); err != nil {
		t.Errorf("KafkaOptions of good settings: %v", err)
	}
}
