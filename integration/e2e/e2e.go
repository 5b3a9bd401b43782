// Package e2e drives a running portalgate from the outside, as people and
// their mail do: free loopback ports to run Caddy on, a Mailbox (an SMTP
// server that keeps the code mail the portal sends) and a Client (a
// cookie-keeping user agent that goes through the sign-in pages). The
// integration tests and cmd/portalbench share it, so both sign in the same
// way; it returns errors rather than failing a test, and knows nothing of
// testing.
package e2e

import (
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"sync"
	"time"
)

// given holds the ports FreePort has handed out, so that two callers in one
// process never get the same one before either listens on it.
var given struct {
	sync.Mutex
	ports map[int]bool
}

// FreePort returns a free loopback port below Linux's ephemeral range
// (32768 and up), so that no outgoing connection of the caller can take it
// between the check and the server's listen. It never returns the same
// port twice in one process.
func FreePort() (int, error) {
	given.Lock()
	defer given.Unlock()
	if given.ports == nil {
		given.ports = map[int]bool{}
	}
	for range 200 {
		port := 20000 + mrand.IntN(12000)
		if given.ports[port] {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf(":%d", port))
		if err != nil {
			continue
		}
		l.Close()
		given.ports[port] = true
		return port, nil
	}
	return 0, errors.New("no free port")
}

// WaitListening waits until something accepts connections on addr
// (host:port), for at most within.
func WaitListening(addr string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listens on %s after %s", addr, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// WaitServing waits until an HTTP GET of url gets an answer, whatever its
// status, for at most within. A listening socket is not yet a serving
// server: WaitListening alone once let a test's first request meet a
// reset connection. It returns the errors seen on the way, so that a
// caller can say what went wrong before the server answered.
func WaitServing(url string, within time.Duration) ([]error, error) {
	deadline := time.Now().Add(within)
	c := &http.Client{
		Timeout:   time.Second,
		Transport: &http.Transport{DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	var seen []error
	for {
		r, err := c.Get(url)
		if err == nil {
			r.Body.Close()
			return seen, nil
		}
		seen = append(seen, err)
		if time.Now().After(deadline) {
			return seen, fmt.Errorf("no answer from %s after %s: %w", url, within, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
