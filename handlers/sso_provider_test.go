package handlers

import (
	"io"
	"strings"
	"sync"
	"testing"
)

// TestSSOClientKeepsConnections: a burst of SSO callbacks exchanging
// their codes at once reuses the connections to the provider from the
// burst before (Go's default transport kept 2 and closed the rest).
func TestSSOClientKeepsConnections(t *testing.T) {
	const burst, bursts = 16, 10
	srv, opened := countingServer(t)
	client := (&SSOProvider{}).client()
	for range bursts {
		var wg sync.WaitGroup
		for range burst {
			wg.Go(func() {
				resp, err := client.Post(srv.URL+"/token", "application/x-www-form-urlencoded", strings.NewReader("grant_type=authorization_code"))
				if err != nil {
					t.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			})
		}
		wg.Wait()
	}
	if n := opened.Load(); n > 2*burst {
		t.Fatalf("%d connections opened to the provider for %d bursts of %d requests at once", n, bursts, burst)
	}
}
