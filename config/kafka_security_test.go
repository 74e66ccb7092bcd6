package config_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/larder-dev/larder/config"
)

// managedKafka is a stream of a managed Kafka cluster: TLS with a CA and a
// client certificate, and SASL/SCRAM with the password in the environment.
const managedKafka = `streams:
  - name: orders
    view: user_last
    kafka:
      brokers: ["b-1.kafka.example.com:9096"]
      topic: orders
      tls:
        ca_file: certs/ca.pem
        cert_file: certs/client.pem
        key_file: /etc/larder/client-key.pem
        server_name: kafka.example.com
      sasl:
        mechanism: SCRAM-SHA-512
        username: larder
        password_env: KAFKA_PASSWORD
`

// TestParseKafkaSecurity reads a stream's TLS and SASL: the password from
// the variable password_env names, the files under the project folder.
func TestParseKafkaSecurity(t *testing.T) {
	dir := t.TempDir()
	p, err := config.Loader{LookupEnv: env(map[string]string{"KAFKA_PASSWORD": "s3cret"})}.
		Parse(filepath.Join(dir, "larder.yaml"), []byte(streamsProject+managedKafka))
	if err != nil {
		t.Fatal(err)
	}
	k := p.Stream("orders").Kafka
	if k.TLS == nil || k.SASL == nil {
		t.Fatalf("kafka %+v: want tls and sasl", k)
	}
	if got, want := k.TLS.CAFile, filepath.Join(dir, "certs/ca.pem"); got != want {
		t.Errorf("ca_file %s, want %s", got, want)
	}
	if got, want := k.TLS.CertFile, filepath.Join(dir, "certs/client.pem"); got != want {
		t.Errorf("cert_file %s, want %s", got, want)
	}
	if k.TLS.KeyFile != "/etc/larder/client-key.pem" || k.TLS.ServerName != "kafka.example.com" {
		t.Errorf("tls %+v", k.TLS)
	}
	if k.SASL.Mechanism != "SCRAM-SHA-512" || k.SASL.Username != "larder" || k.SASL.Password != "s3cret" || k.SASL.PasswordEnv != "KAFKA_PASSWORD" {
		t.Errorf("sasl %+v", k.SASL)
	}

	// tls with nothing under it, or true, is TLS with the system's
	// authorities; false, or none, is plaintext.
	for _, tc := range []struct {
		tls string
		on  bool
	}{{"tls:", true}, {"tls: {}", true}, {"tls: true", true}, {"tls: false", false}, {"", false}} {
		p, err := config.Loader{LookupEnv: env(map[string]string{"KP": "pw"})}.Parse("larder.yaml", []byte(streamsProject+`streams:
  - name: orders
    view: user_last
    kafka:
      brokers: ["k:9092"]
      topic: orders
      `+tc.tls+`
      sasl: {mechanism: PLAIN, username: u, password_env: KP}
`))
		if err != nil {
			t.Errorf("%q: %v", tc.tls, err)
			continue
		}
		k := p.Stream("orders").Kafka
		if on := k.TLS != nil; on != tc.on {
			t.Errorf("%q: tls %+v, want on %v", tc.tls, k.TLS, tc.on)
		}
		if k.SASL == nil || k.SASL.Mechanism != "PLAIN" || k.SASL.Password != "pw" {
			t.Errorf("%q: sasl %+v", tc.tls, k.SASL)
		}
	}
}

// TestParseBadKafkaSecurity reports each problem of a stream's TLS and
// SASL once, at its line and field.
func TestParseBadKafkaSecurity(t *testing.T) {
	set := map[string]string{"KAFKA_PASSWORD": "s3cret"}
	for _, tc := range []struct {
		name     string
		old, new string
		env      map[string]string
		want     string
	}{
		{"unknown mechanism", "        mechanism: SCRAM-SHA-512", "        mechanism: GSSAPI", set,
			`larder.yaml:32:20: streams[0].kafka.sasl.mechanism: unknown mechanism "GSSAPI": want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512`},
		{"mechanism in lower case", "        mechanism: SCRAM-SHA-512", "        mechanism: scram-sha-512", set,
			`larder.yaml:32:20: streams[0].kafka.sasl.mechanism: unknown mechanism "scram-sha-512": want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512`},
		{"no mechanism", "        mechanism: SCRAM-SHA-512", "", set,
			`larder.yaml:32:9: streams[0].kafka.sasl.mechanism: is required: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512`},
		{"no username", "        username: larder", "", set,
			`larder.yaml:32:9: streams[0].kafka.sasl.username: is required: the user larder authenticates as`},
		{"password_env unset", "        password_env: KAFKA_PASSWORD", "        password_env: KAFKA_PASSWORD", map[string]string{"OTHER": "x"},
			`larder.yaml:34:23: streams[0].kafka.sasl.password_env: environment variable KAFKA_PASSWORD is not set: set it in larder's environment before larder starts`},
		{"password_env empty", "        password_env: KAFKA_PASSWORD", "        password_env: KAFKA_PASSWORD", map[string]string{"KAFKA_PASSWORD": ""},
			`larder.yaml:34:23: streams[0].kafka.sasl.password_env: environment variable KAFKA_PASSWORD is empty: set it to the Kafka password before larder starts (SASL takes no empty password)`},
		{"no password_env", "        password_env: KAFKA_PASSWORD", "", set,
			`larder.yaml:32:9: streams[0].kafka.sasl.password_env: is required: the environment variable that holds the password`},
		{"password in the file", "        password_env: KAFKA_PASSWORD", "        password: s3cret", set,
			`larder.yaml:34:19: streams[0].kafka.sasl.password: the password is never written in larder.yaml: put it in an environment variable and name that with password_env`},
		{"cert without key", "        key_file: /etc/larder/client-key.pem", "", set,
			`larder.yaml:28:20: streams[0].kafka.tls.cert_file: needs key_file too: the key of the client certificate`},
		{"key without cert", "        cert_file: certs/client.pem", "", set,
			`larder.yaml:28:19: streams[0].kafka.tls.key_file: needs cert_file too: the client certificate of the key`},
		{"skip verify", "        server_name: kafka.example.com", "        insecure_skip_verify: true", set,
			`larder.yaml:30:9: streams[0].kafka.tls.insecure_skip_verify: unknown field`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := strings.Replace(streamsProject+managedKafka, tc.old+"\n", tc.new+"\n", 1)
			if tc.new == "" {
				src = strings.Replace(streamsProject+managedKafka, tc.old+"\n", "", 1)
			}
			_, err := config.Loader{LookupEnv: env(tc.env)}.Parse("larder.yaml", []byte(src))
			got := problemLines(t, err)
			if len(got) != 1 || !strings.Contains(got[0], tc.want) {
				t.Errorf("got\n%s\nwant one problem: %s", strings.Join(got, "\n"), tc.want)
			}
		})
	}
}

// TestParseKafkaPasswordInPasswordEnv reports a password written in
// password_env, in place of the name of its variable, without printing it:
// the problems of the file go to terminals and logs.
func TestParseKafkaPasswordInPasswordEnv(t *testing.T) {
	const password = "Tr0ub4dor&3"
	src := strings.Replace(streamsProject+managedKafka, "password_env: KAFKA_PASSWORD", `password_env: "`+password+`"`, 1)
	_, err := config.Loader{LookupEnv: env(map[string]string{"KAFKA_PASSWORD": "s3cret"})}.Parse("larder.yaml", []byte(src))
	got := problemLines(t, err)
	want := `larder.yaml:34:23: streams[0].kafka.sasl.password_env: is not the name of an environment variable (letters, digits, _, - and .): write the name of the variable that holds the password, never the password`
	if len(got) != 1 || !strings.Contains(got[0], want) {
		t.Errorf("got\n%s\nwant one problem: %s", strings.Join(got, "\n"), want)
	}
	if strings.Contains(err.Error(), password) {
		t.Errorf("the problem prints the password: %v", err)
	}
}
