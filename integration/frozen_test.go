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
// the outage is logged once, and sign-in works again once Redis resumes;
// the refused request takes no effect when Redis runs it late.
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

	mailBefore := mb.Count()
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
	// Redis runs the calls that waited in it once it resumes, but each
	// script refuses past its caller's deadline: the refused request has
	// no effect. No code goes out for jane's first browser, and no
	// cooldown holds back her next request.
	time.Sleep(1500 * time.Millisecond)
	if n := mb.Count(); n != mailBefore {
		t.Fatalf("%d messages sent after the resume, want none (the refused request took effect late)", n-mailBefore)
	}
	a.browser().signIn("jane@acme.example", "/tickets/3")
}
