package natstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// PKI is a certificate authority made for one test: its certificates are
// valid for an hour, for 127.0.0.1 and localhost, and are written as PEM
// files in the cert-manager layout (ca.crt, tls.crt, tls.key) under the
// test's temporary directory, as the services read them.
type PKI struct {
	t    testing.TB
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	// CAFile is the CA's certificate, PEM.
	CAFile string
	// Pool holds the CA's certificate.
	Pool *x509.CertPool
}

// Cert is a certificate the PKI issued, with its key.
type Cert struct {
	// Dir holds the certificate, its key and the CA's certificate as a
	// cert-manager Secret mounted there would: tls.crt, tls.key, ca.crt.
	Dir string
	// CertFile and KeyFile are Dir's tls.crt and tls.key.
	CertFile, KeyFile string
	TLS               tls.Certificate
}

// NewPKI makes a CA called name.
func NewPKI(t testing.TB, name string) *PKI {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("create CA %s: %v", name, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	p := &PKI{t: t, dir: t.TempDir(), cert: cert, key: key, Pool: x509.NewCertPool()}
	p.Pool.AddCert(cert)
	p.CAFile = filepath.Join(p.dir, "ca.crt")
	writePEM(t, p.CAFile, "CERTIFICATE", der)
	return p
}

// Issue returns a certificate for name, signed by the CA, valid for
// 127.0.0.1 and localhost both as a server and as a client: a NATS server
// presents one on its client port and on its routes, where it also dials.
func (p *PKI) Issue(name string) Cert {
	p.t.Helper()
	key := newKey(p.t)
	tmpl := &x509.Certificate{
		SerialNumber: serial(p.t),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, &key.PublicKey, p.key)
	if err != nil {
		p.t.Fatalf("issue a certificate for %s: %v", name, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		p.t.Fatal(err)
	}
	dir, err := os.MkdirTemp(p.dir, name+"-")
	if err != nil {
		p.t.Fatal(err)
	}
	c := Cert{Dir: dir, CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key")}
	writePEM(p.t, c.CertFile, "CERTIFICATE", der)
	writePEM(p.t, c.KeyFile, "PRIVATE KEY", keyDER)
	writePEM(p.t, filepath.Join(dir, "ca.crt"), "CERTIFICATE", p.cert.Raw)
	c.TLS = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	return c
}

// ServerTLS is the configuration of a server presenting c that accepts
// only peers with a certificate of this CA, and verifies the servers it
// dials against it: for natsembed.Options.TLS and natsembed.Cluster.TLS.
func (p *PKI) ServerTLS(c Cert) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{c.TLS},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    p.Pool,
		RootCAs:      p.Pool,
	}
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func serial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
