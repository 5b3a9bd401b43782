package integration

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestFrozenRedisFailsClosedInBoundedTime: with Redis stopped (SIGSTOP,
// connections open but nothing answers) a sign-in is refused as
// "temporarily unavailable" within the call timeout instead of hanging,
// the outage is logged once, and sign-in works again once Redis resumes.
func TestFrozenRedisFailsClosedInBoundedTime(t *testing.T) {
	bin := redisBinary(t)
	port := freePort(t)
	redis := runRedis(t, bin, port, t.TempDir(), false)
	t.Cleanup(func() {
		_ = redis.Process.Signal(syscall.SIGCONT)
		_ = redis.Process.Kill()
		_ = redis.Wait()
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	waitListening(t, addr)
	mb := startMailbox(t, "")
	a := startInstance(t, addr, mb.Addr, startUpstream(t), "A")
	a.mail = mb
	a.browser().signIn("lee@acme.example", "/tickets/1")

	if err := redis.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	b := a.browser()
	if r := b.get("/tickets/2"); r.Status != http.StatusSeeOther {
		t.Fatalf("a page before sign-in with Redis frozen: %d", r.Status)
	}
	page := b.get("/_portal/signin")
	start := time.Now()
	r := b.post("/_portal/signin", map[string][]string{"csrf": {csrfOf(t, page.Body)}, "email": {"jane@acme.example"}})
	took := time.Since(start)
	if r.Status != http.StatusServiceUnavailable || !strings.Contains(r.Body, "temporarily unavailable") {
		t.Fatalf("sign-in with Redis frozen: %d after %s\n%s", r.Status, took, r.Body)
	}
	if took > 5*time.Second {
		t.Fatalf("the refusal took %s, want about the 2 s call timeout", took)
	}
	// More refusals log nothing new.
	for range 3 {
		if r := a.browser().get("/_portal/signin"); r.Status != http.StatusServiceUnavailable {
			t.Fatalf("sign-in page while frozen and known down: %d", r.Status)
		}
	}
	logs := func() string {
		b, _ := os.ReadFile(filepath.Join(a.dir, "caddy.log"))
		return string(b)
	}
	if n := strings.Count(logs(), "portal storage unavailable"); n != 1 {
		t.Fatalf("the outage was logged %d times, want once", n)
	}

	if err := redis.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "sign-in to work again", func() bool {
		return a.browser().get("/_portal/signin").Status == http.StatusOK
	})
	// Redis may still run the refused request once it resumes (a command
	// sent cannot be taken back): then jane's code goes out for the first
	// browser's flow, at any moment from the resume on, and her cooldown
	// runs. Another contact, in a new browser, signs in at once; a mail
	// to jane may come first, once.
	sam := a.browser().c
	if r, err := sam.Get("/tickets/3"); err != nil || r.Status != http.StatusSeeOther {
		t.Fatalf("GET /tickets/3 before sam's sign-in: %+v %v", r, err)
	}
	csrf, err := sam.SubmitEmail("sam@acme.example")
	if err != nil {
		t.Fatal(err)
	}
	m, err := mb.Wait(10 * time.Second)
	if err == nil && len(m.To) == 1 && m.To[0] == "jane@acme.example" {
		m, err = mb.Wait(10 * time.Second)
	}
	if err != nil || len(m.To) != 1 || m.To[0] != "sam@acme.example" {
		t.Fatalf("sam's code: mail to %v (%v)", m.To, err)
	}
	if r, err := sam.EnterCode(csrf, m.Code()); err != nil || r.Status != http.StatusSeeOther || r.Location != "/tickets/3" {
		t.Fatalf("sam's code: %+v %v, want 303 to /tickets/3", r, err)
	}
}
