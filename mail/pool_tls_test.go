package mail_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/kdesk/portalgate/mail"
)

// TestSMTPPoolOverSTARTTLS: with tls starttls, the connection is upgraded
// once and carries message after message.
func TestSMTPPoolOverSTARTTLS(t *testing.T) {
	cert, roots := selfSigned(t)
	var conns, tlsMsgs atomic.Int32
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		_, isTLS := c.TLSConnectionState()
		return &tlsSession{isTLS: isTLS, msgs: &tlsMsgs}, nil
	}))
	srv.Domain = "localhost"
	srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(acceptCounter{l, &conns}) }()
	t.Cleanup(func() { _ = srv.Close() })

	s := &mail.SMTP{Host: "localhost", Port: l.Addr().(*net.TCPAddr).Port, From: "support@acme.example", TLS: "starttls",
		TLSConfig: &tls.Config{RootCAs: roots, ServerName: "localhost"}, Connections: 2, Timeout: 5 * time.Second}
	defer s.Close()
	for i := range 5 {
		if err := s.Send(context.Background(), message(i)); err != nil {
			t.Fatal(err)
		}
	}
	if n := tlsMsgs.Load(); n != 5 {
		t.Fatalf("%d messages arrived over TLS, want 5", n)
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections, want 1", n)
	}
}

type tlsSession struct {
	isTLS bool
	msgs  *atomic.Int32
}

func (s *tlsSession) Reset()                               {}
func (s *tlsSession) Logout() error                        { return nil }
func (s *tlsSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *tlsSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *tlsSession) Data(r io.Reader) error {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	if s.isTLS {
		s.msgs.Add(1)
	}
	return nil
}

// acceptCounter counts the connections a listener accepts.
type acceptCounter struct {
	net.Listener
	n *atomic.Int32
}

func (l acceptCounter) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// selfSigned makes a certificate for localhost and the pool that trusts it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, roots
}
