package module

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"net/http/httptest"
	"testing"
)

func TestActor(t *testing.T) {
	r := httptest.NewRequest("GET", "/portal/workspaces/acme/links", nil)
	r.RemoteAddr = "192.0.2.4:51234"
	if got := actor(r); got != "192.0.2.4:51234" {
		t.Errorf("actor without a client certificate = %q", got)
	}
	r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{{Subject: pkix.Name{CommonName: "ops", Organization: []string{"Acme"}}}}}
	if got := actor(r); got != "CN=ops,O=Acme" {
		t.Errorf("actor with a client certificate = %q, want its subject", got)
	}
}
