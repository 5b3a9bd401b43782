package integration

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestWebhooksSurviveReceiverDownAndRestart: events for a receiver that
// is down wait in the persistent outbox, survive a Caddy restart, and
// arrive once the receiver is up, signed.
func TestWebhooksSurviveReceiverDownAndRestart(t *testing.T) {
	// Reserve the receiver's address, but leave it closed for now.
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	secret := "whsec_" + base64.StdEncoding.EncodeToString([]byte("an integration test key of 32 b"))
	g := newGateway(t)
	g.extraWorkspace = fmt.Sprintf(`webhook http://%s/hooks {
				secret %s
				events sign_in sign_out link_created
			}`, addr, secret)
	g.start()

	g.browser().signIn("jane@acme.example", "/tickets")
	if s, body := g.adminDo(http.MethodPost, "/portal/workspaces/acme/links", "application/json", []byte(`{"contact_id":"c-2"}`)); s != http.StatusCreated {
		t.Fatalf("minting a link: %d %s", s, body)
	}
	// The receiver is down: let the outbox fail a few times, then restart.
	time.Sleep(1500 * time.Millisecond)
	g.stop()
	g.start()

	var mu sync.Mutex
	var types []string
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var v struct {
			Type string `json:"type"`
		}
		if r.URL.Path != "/hooks" || json.Unmarshal(body, &v) != nil || !strings.HasPrefix(r.Header.Get("webhook-signature"), "v1,") || r.Header.Get("webhook-id") == "" {
			http.Error(w, "bad delivery", http.StatusBadRequest)
			return
		}
		mu.Lock()
		types = append(types, v.Type)
		mu.Unlock()
	})}
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()
	eventually(t, 30*time.Second, "the queued webhooks to arrive", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(types) >= 2
	})
	mu.Lock()
	got := strings.Join(types, ",")
	mu.Unlock()
	if !strings.Contains(got, "sign_in") || !strings.Contains(got, "link_created") {
		t.Fatalf("received %s, want sign_in and link_created", got)
	}
}
