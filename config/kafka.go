package config

import (
	"strings"

	"github.com/goccy/go-yaml/ast"

	"github.com/larder-dev/larder"
)

// kafka decodes a stream's kafka: its brokers, its topic, and how larder
// reaches them (tls, sasl).
func (d *decoder) kafka(n node) *larder.KafkaTopic {
	k := &larder.KafkaTopic{}
	for _, f := range d.fields(n, "brokers", "topic", "tls", "sasl") {
		switch f.key {
		case "brokers":
			for _, it := range d.list(f, "host:port addresses of brokers") {
				k.Brokers = append(k.Brokers, d.broker(it))
			}
		case "topic":
			k.Topic = d.str(f)
		case "tls":
			k.TLS = d.kafkaTLS(f)
		case "sasl":
			k.SASL = d.kafkaSASL(f)
		}
	}
	return k
}

// kafkaTLS decodes a Kafka topic's tls. Being written turns TLS on, with
// nothing under it too; true and false are taken as well, as redis.tls
// takes them.
func (d *decoder) kafkaTLS(n node) *larder.KafkaTLS {
	if b, ok := n.val.(*ast.BoolNode); ok {
		if !b.Value {
			return nil
		}
		return &larder.KafkaTLS{}
	}
	t := &larder.KafkaTLS{}
	for _, f := range d.fields(n, "ca_file", "cert_file", "key_file", "server_name") {
		switch f.key {
		case "ca_file":
			t.CAFile = d.str(f)
		case "cert_file":
			t.CertFile = d.str(f)
		case "key_file":
			t.KeyFile = d.str(f)
		case "server_name":
			t.ServerName = d.str(f)
		}
	}
	return t
}

// kafkaSASL decodes a Kafka topic's sasl. The password is read from the
// environment variable password_env names, now, so that an unset one is
// reported with the file's other problems; it is never written in the
// file.
func (d *decoder) kafkaSASL(n node) *larder.KafkaSASL {
	s := &larder.KafkaSASL{}
	for _, f := range d.fields(n, "mechanism", "username", "password_env", "password") {
		switch f.key {
		case "mechanism":
			s.Mechanism = d.str(f)
		case "username":
			s.Username = d.str(f)
		case "password":
			d.problem(f, "the password is never written in larder.yaml: put it in an environment variable and name that with password_env")
			// Its fix is password_env, which Validate would report
			// as missing too.
			d.bad = append(d.bad, child(n.path, "password_env"))
		case "password_env":
			name := d.str(f)
			if name == "" || d.isBad(f.path) {
				break
			}
			if !envName(name) {
				d.notEnvName(f, "password")
				break
			}
			pw, ok := d.lookup(name)
			switch {
			case !ok:
				d.problem(f, "environment variable %s is not set: set it in larder's environment before larder starts", name)
			case pw == "":
				d.problem(f, "environment variable %s is empty: set it to the Kafka password before larder starts (SASL takes no empty password)", name)
			}
			s.Password, s.PasswordEnv = pw, name
		}
	}
	return s
}

// notEnvName reports field f, which should name the environment variable
// that holds a secret (what: "password", "tokens") and holds something
// else: most likely the secret itself, which is not printed.
func (d *decoder) notEnvName(f node, what string) {
	d.problem(f, "is not the name of an environment variable (letters, digits, _, - and .): write the name of the variable that holds the %s, never the %s", what, what)
}

// envName reports whether name can be the name of an environment variable:
// letters, digits, _, and the - and . that Kubernetes takes too.
func envName(name string) bool {
	for _, r := range name {
		if !strings.ContainsRune("_-.", r) && (r < 'A' || r > 'Z') && (r < 'a' || r > 'z') && (r < '0' || r > '9') {
			return false
		}
	}
	return true
}
