package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kdesk/portalgate/integration/e2e"
)

// TestReloadsAreInvisible runs 16 clients — half of them signed in and
// browsing, half signing in by code — while the config is reloaded every
// 2 s for 30 s: no panic, no 5xx, every sign-in audited, and every code
// mailed within a few seconds (no message held back by a lease across a
// reload).
func TestReloadsAreInvisible(t *testing.T) {
	if testing.Short() {
		t.Skip("30 s of load")
	}
	const (
		clients  = 16
		duration = 30 * time.Second
		every    = 2 * time.Second
		lateMail = 5 * time.Second
	)
	g := newGateway(t)
	var cs []string
	// More contacts than sign-ins in 30 s: each address is used once, so no
	// resend cooldown holds a code back.
	const contacts = 900
	for i := range contacts {
		cs = append(cs, fmt.Sprintf(`{"id":"r-%d","email":"r%d@acme.example","name":"Reload %d"}`, i, i, i))
	}
	g.contacts = "[" + strings.Join(cs, ",") + "]"
	// One client address for everyone: lift the per-client limits.
	g.extraGlobal = `limits {
			sends_per_ip 1000000
			requests_per_ip 1000000
			tries_per_ip 1000000
		}`
	g.start()

	// Mail is routed to whoever waits for that address, with its arrival.
	type arrival struct {
		code string
		at   time.Time
	}
	var mu sync.Mutex
	inbox := map[string]chan arrival{}
	box := func(email string) chan arrival {
		mu.Lock()
		defer mu.Unlock()
		if inbox[email] == nil {
			inbox[email] = make(chan arrival, 8)
		}
		return inbox[email]
	}
	stopMail := make(chan struct{})
	go func() {
		for {
			select {
			case <-stopMail:
				return
			default:
			}
			m, err := g.mail.Wait(200 * time.Millisecond)
			if err == nil && len(m.To) == 1 {
				box(m.To[0]) <- arrival{m.Code(), time.Now()}
			}
		}
	}()
	defer close(stopMail)

	// Half the clients sign in before the load starts.
	browsers := make([]*e2e.Client, clients/2)
	for i := range browsers {
		c := e2e.NewClient(g.base(), e2e.Options{FreshConns: true})
		email := fmt.Sprintf("r%d@acme.example", i)
		csrf, err := c.SubmitEmail(email)
		if err != nil {
			t.Fatal(err)
		}
		a := <-box(email)
		if r, err := c.EnterCode(csrf, a.code); err != nil || r.Status != http.StatusSeeOther {
			t.Fatalf("signing in %s: %v %d", email, err, r.Status)
		}
		browsers[i] = c
	}

	var (
		requests, fivexx, signIns atomic.Int64
		// dropped counts requests whose connection the server reset during
		// a reload: Caddy binds the new config's socket beside the old one
		// (SO_REUSEPORT), and connections still queued on the old one are
		// reset when it closes. They never reached portalgate.
		dropped  atomic.Int64
		failures = make(chan string, 100)
		wg       sync.WaitGroup
		next     atomic.Int64
	)
	next.Store(int64(len(browsers)))
	fail := func(format string, a ...any) {
		select {
		case failures <- fmt.Sprintf(format, a...):
		default:
		}
	}
	check := func(what string, r e2e.Response, err error, want int) bool {
		requests.Add(1)
		if err != nil {
			if msg := err.Error(); strings.HasSuffix(msg, "EOF") || strings.Contains(msg, "connection reset") {
				dropped.Add(1)
				return false
			}
			fail("%s: %v", what, err)
			return false
		}
		if r.Status >= 500 {
			fivexx.Add(1)
			fail("%s: %d\n%s", what, r.Status, r.Body)
			return false
		}
		if r.Status != want {
			fail("%s: %d, want %d", what, r.Status, want)
			return false
		}
		return true
	}
	deadline := time.Now().Add(duration)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; time.Now().Before(deadline); n++ {
				if i < len(browsers) {
					r, err := browsers[i].Get(fmt.Sprintf("/tickets/%d", n))
					check("signed-in page", r, err, http.StatusOK)
					continue
				}
				// A sign-in by code, from a deep link, for a fresh contact.
				k := next.Add(1)
				c := e2e.NewClient(g.base(), e2e.Options{FreshConns: true})
				if k >= contacts {
					// Every address has had its code: browse anonymously.
					r, err := c.Get(fmt.Sprintf("/tickets/%d", k))
					check("anonymous page", r, err, http.StatusSeeOther)
					continue
				}
				email := fmt.Sprintf("r%d@acme.example", k)
				wanted := fmt.Sprintf("/tickets/%d", k)
				r, err := c.Get(wanted)
				if !check("anonymous page", r, err, http.StatusSeeOther) {
					continue
				}
				r, err = c.Get("/_portal/signin")
				if !check("sign-in page", r, err, http.StatusOK) {
					continue
				}
				csrf, _ := e2e.CSRF(r.Body)
				asked := time.Now()
				r, err = c.Post("/_portal/signin", map[string][]string{"csrf": {csrf}, "email": {email}})
				if !check("email", r, err, http.StatusSeeOther) {
					continue
				}
				r, err = c.Get("/_portal/code")
				if !check("code page", r, err, http.StatusOK) {
					continue
				}
				csrf, _ = e2e.CSRF(r.Body)
				var a arrival
				select {
				case a = <-box(email):
				case <-time.After(3 * lateMail):
					fail("no mail for %s within %s", email, 3*lateMail)
					continue
				}
				if late := a.at.Sub(asked); late > lateMail {
					fail("mail for %s took %s", email, late)
				}
				r, err = c.EnterCode(csrf, a.code)
				if check("code", r, err, http.StatusSeeOther) && r.Location == wanted {
					signIns.Add(1)
				}
			}
		}()
	}

	reloads := 0
	for time.Now().Before(deadline) {
		time.Sleep(every)
		g.title = fmt.Sprintf("Acme Support %d", reloads)
		g.start()
		reloads++
	}
	wg.Wait()
	close(failures)
	for f := range failures {
		t.Error(f)
	}
	t.Logf("%d reloads, %d requests (%d connections reset by the listener swap), %d sign-ins, %d 5xx",
		reloads, requests.Load(), dropped.Load(), signIns.Load(), fivexx.Load())
	if reloads < 5 || signIns.Load() < 20 {
		t.Fatalf("too little happened: %d reloads, %d sign-ins", reloads, signIns.Load())
	}
	if logs := g.logText(); strings.Contains(logs, "panic") {
		i := strings.Index(logs, "panic")
		t.Fatalf("Caddy logged a panic:\n%s", logs[max(0, i-500):min(len(logs), i+2000)])
	}
	// Every sign-in is in the stored audit trail.
	accepted := 0
	cursor := ""
	for {
		status, body := g.adminDo(http.MethodGet, "/portal/workspaces/acme/audit?event=code_accepted&limit=500&cursor="+cursor, "", nil)
		if status != http.StatusOK {
			t.Fatalf("audit: %d %s", status, body)
		}
		var page struct {
			Events []json.RawMessage `json:"events"`
			Next   string            `json:"next_cursor"`
		}
		if err := json.Unmarshal([]byte(body), &page); err != nil {
			t.Fatal(err)
		}
		accepted += len(page.Events)
		if page.Next == "" {
			break
		}
		cursor = page.Next
	}
	if want := int(signIns.Load()) + len(browsers); accepted != want {
		t.Fatalf("%d code_accepted events stored, want %d", accepted, want)
	}
}
