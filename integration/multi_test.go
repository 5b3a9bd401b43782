package integration

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kdesk/portalgate/integration/e2e"
)

// redisBinary finds redis-server; in CI a missing binary is a failure,
// elsewhere a skip.
func redisBinary(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("redis-server is not installed (.ci/run installs it)")
		}
		t.Skip("redis-server is not installed")
	}
	return bin
}

// runRedis starts redis-server on port with its files in dir; persist
// turns on AOF with fsync on every write (what Redis acknowledged survives
// its restart). The caller stops it.
func runRedis(t *testing.T, bin string, port int, dir string, persist bool) *exec.Cmd {
	t.Helper()
	aof := []string{"--appendonly", "no"}
	if persist {
		aof = []string{"--appendonly", "yes", "--appendfsync", "always"}
	}
	args := append([]string{"--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--dir", dir}, aof...)
	cmd := exec.Command(bin, args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd
}

// waitListening waits until addr accepts connections.
func waitListening(t *testing.T, addr string) {
	t.Helper()
	if err := e2e.WaitListening(addr, 10*time.Second); err != nil {
		t.Fatal(err)
	}
}

// startRedis runs a redis-server on a free loopback port for the test.
func startRedis(t *testing.T) string {
	t.Helper()
	port := freePort(t)
	cmd := runRedis(t, redisBinary(t), port, t.TempDir(), false)
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	waitListening(t, addr)
	return addr
}

// instance is one Caddy process with the plugin, sharing Redis.
type instance struct {
	*gateway
	cmd *exec.Cmd
}

const multiContacts = `[
 {"id": "c-1", "email": "jane@acme.example", "name": "Jane Doe"},
 {"id": "c-2", "email": "sam@acme.example", "name": "Sam Roe"},
 {"id": "c-4", "email": "pat@acme.example", "name": "Pat Poe"},
 {"id": "c-5", "email": "lee@acme.example", "name": "Lee Loe"}
]`

func startInstance(t *testing.T, redis string, mailAddr string, up *upstream, name string, extraWorkspace ...string) *instance {
	t.Helper()
	g := &gateway{t: t, dir: t.TempDir(), httpPort: freePort(t), adminPort: freePort(t), up: up}
	host, port, _ := net.SplitHostPort(mailAddr)
	contacts := filepath.Join(g.dir, "contacts.json")
	if err := os.WriteFile(contacts, []byte(multiContacts), 0o600); err != nil {
		t.Fatal(err)
	}
	cf := fmt.Sprintf(`{
	admin 127.0.0.1:%d
	persist_config off
	auto_https off
	storage file_system %s/caddy
	log {
		output file %s/caddy.log
		level INFO
	}
	portal {
		storage redis {
			address %s
			key_prefix multi:
		}
		mail smtp {
			host %s
			port %s
			from support@acme.example
			tls none
		}
		limits {
			sends_per_email 3
		}
		workspace acme {
			title "Acme Support"
			url http://127.0.0.1:%d
			contacts_file %s
			resend_cooldown 3s
			%s
		}
	}
}

http://127.0.0.1:%d {
	portal_auth acme
	reverse_proxy %s
}
`, g.adminPort, g.dir, g.dir, redis, host, port, g.httpPort, contacts, strings.Join(extraWorkspace, "\n"), g.httpPort, strings.TrimPrefix(up.URL, "http://"))
	return runInstance(t, g, cf, name)
}

// runInstance runs the built Caddy as a process of its own with the
// Caddyfile cf, its files in g.dir, and waits until it listens; the test's
// end kills it. Run again with the same g, it restarts on the same state.
func runInstance(t *testing.T, g *gateway, cf string, name string) *instance {
	t.Helper()
	file := filepath.Join(g.dir, "Caddyfile")
	if err := os.WriteFile(file, []byte(cf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(builtCaddy(t), "run", "--config", file, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+g.dir, "XDG_CONFIG_HOME="+g.dir)
	out, err := os.OpenFile(filepath.Join(g.dir, "stderr.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	in := &instance{gateway: g, cmd: cmd}
	t.Cleanup(func() {
		in.kill()
		_ = out.Close()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(g.dir, "stderr.log"))
			t.Logf("instance %s output:\n%s", name, b)
		}
	})
	g.waitUp()
	return in
}

func (in *instance) kill() {
	if in.cmd.ProcessState == nil {
		_ = in.cmd.Process.Signal(syscall.SIGKILL)
		_ = in.cmd.Wait()
	}
}

// on returns a browser that talks to this instance with the cookies of b,
// as a load balancer in front of both would.
func (b *browser) on(in *instance) *browser {
	return &browser{t: b.t, g: in.gateway, c: b.c.On(in.base())}
}

// Two Caddy processes share one Redis: a sign-in started on one finishes
// on the other, sessions, revocation, cooldowns and rate limits hold across
// both, each code mail is sent once, and mail queued by an instance that
// dies is delivered by the other.
func TestTwoInstancesShareRedis(t *testing.T) {
	redis := startRedis(t)
	mb := startMailbox(t, "")
	up := startUpstream(t)
	a := startInstance(t, redis, mb.Addr, up, "A")
	bi := startInstance(t, redis, mb.Addr, up, "B")

	onA := a.browser()
	onB := onA.on(bi)
	r := onA.get("/tickets/5?tab=history")
	if r.Status != http.StatusSeeOther {
		t.Fatalf("A before sign-in: %d", r.Status)
	}
	csrf := onA.submitEmail("sam@acme.example")
	m := mb.wait(t, 15*time.Second)
	r = onB.enterCode(csrf, m.Code())
	if r.Status != http.StatusSeeOther || r.Location != "/tickets/5?tab=history" {
		t.Fatalf("code entered on B: %d %q\n%s", r.Status, r.Location, r.Body)
	}
	for _, br := range []*browser{onA, onB} {
		if r := br.get("/tickets/5"); r.Status != http.StatusOK {
			t.Fatalf("session on %s: %d", br.g.base(), r.Status)
		}
	}
	// Both instances run outbox workers; the code mail went out once.
	mb.none(t, 2*time.Second)

	// Revoking through A's admin API signs the contact out on B at once.
	if s, body := a.adminDo(http.MethodDelete, "/portal/workspaces/acme/sessions?contact_id=c-2", "", nil); s != http.StatusOK || !strings.Contains(body, `"revoked":1`) {
		t.Fatalf("revoke on A: %d %s", s, body)
	}
	if r := onB.get("/tickets/5"); r.Status != http.StatusSeeOther {
		t.Fatalf("revoked session on B: %d", r.Status)
	}

	// The resend cooldown holds across instances. The per-email limit
	// below counts in fixed windows (10 minutes by default, aligned to the
	// clock): start its dozen seconds well inside one.
	if left := time.Until(time.Now().Truncate(10 * time.Minute).Add(10 * time.Minute)); left < 30*time.Second {
		time.Sleep(left + time.Second)
	}
	jane := a.browser()
	janeCSRF := jane.submitEmail("jane@acme.example")
	mb.wait(t, 15*time.Second)
	r = jane.on(bi).post("/_portal/resend", map[string][]string{"csrf": {janeCSRF}})
	if r.Status != http.StatusTooManyRequests || !strings.Contains(r.Body, "Please wait") {
		t.Fatalf("resend on B within A's cooldown: %d", r.Status)
	}
	// So does the per-email rate limit (3 codes per window): one sent so
	// far, a second on A and a third on B, and the fourth (on A) is not
	// mailed, though it is answered like any other.
	for i, on := range []*browser{jane, jane.on(bi), jane} {
		time.Sleep(3100 * time.Millisecond) // past the cooldown
		r = on.post("/_portal/resend", map[string][]string{"csrf": {janeCSRF}})
		if r.Status != http.StatusOK {
			t.Fatalf("send %d across instances: %d\n%s", i+2, r.Status, r.Body)
		}
		if i < 2 {
			mb.wait(t, 15*time.Second)
		}
	}
	mb.none(t, 2*time.Second)

	// Mail queued while SMTP is down, by an instance that then dies, is
	// delivered by the other.
	addr := mb.Addr
	mb.Close()
	pat := a.browser()
	patCSRF := pat.submitEmail("pat@acme.example")
	time.Sleep(500 * time.Millisecond) // a first delivery attempt fails
	a.kill()
	mb = startMailbox(t, addr)
	m = mb.wait(t, 30*time.Second)
	if m.To[0] != "pat@acme.example" {
		t.Fatalf("mail to %v", m.To)
	}
	if r := pat.on(bi).enterCode(patCSRF, m.Code()); r.Status != http.StatusSeeOther {
		t.Fatalf("pat's code on B: %d", r.Status)
	}
}

// Redis down: fail closed (503, never a pass-through), say so once in the
// log, and serve again by itself when Redis is back.
func TestRedisDownFailsClosed(t *testing.T) {
	bin := redisBinary(t)
	port := freePort(t)
	dataDir := t.TempDir()
	// Persistent, as the README recommends, so the restart keeps sessions.
	startAt := func() *exec.Cmd { return runRedis(t, bin, port, dataDir, true) }
	redis := startAt()
	defer func() { _ = redis.Process.Kill(); _ = redis.Wait() }()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	waitListening(t, addr)
	mb := startMailbox(t, "")
	up := startUpstream(t)
	a := startInstance(t, addr, mb.Addr, up, "A")
	a.mail = mb
	b := a.browser()
	b.signIn("lee@acme.example", "/tickets/1")
	seenBefore := up.requests()

	_ = redis.Process.Kill()
	_ = redis.Wait()
	for range 5 {
		r := b.get("/tickets/1")
		if r.Status != http.StatusServiceUnavailable || !strings.Contains(r.Body, "temporarily unavailable") {
			t.Fatalf("signed-in request with Redis down: %d\n%s", r.Status, r.Body)
		}
	}
	if r := b.get("/api/x", "Accept", "application/json"); r.Status != http.StatusServiceUnavailable || !strings.Contains(r.Body, "temporarily_unavailable") {
		t.Fatalf("API call with Redis down: %d %s", r.Status, r.Body)
	}
	if r := a.browser().get("/_portal/signin"); r.Status != http.StatusServiceUnavailable {
		t.Fatalf("sign-in page with Redis down: %d", r.Status)
	}
	if up.requests() != seenBefore {
		t.Fatal("a request reached the portal while Redis was down")
	}
	logs := func() string {
		b, _ := os.ReadFile(filepath.Join(a.dir, "caddy.log"))
		return string(b)
	}
	if n := strings.Count(logs(), "portal storage unavailable"); n != 1 {
		t.Fatalf("the outage was logged %d times, want once", n)
	}

	redis = startAt()
	eventually(t, 20*time.Second, "service to resume", func() bool {
		return b.get("/tickets/1").Status == http.StatusOK
	})
	if !strings.Contains(logs(), "portal storage available again") {
		t.Fatal("the recovery was not logged")
	}
}

// Caddy starts while Redis is unreachable: requests are refused at once
// (not held), and the portal serves by itself once Redis answers.
func TestStartWithRedisDown(t *testing.T) {
	bin := redisBinary(t)
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	mb := startMailbox(t, "")
	a := startInstance(t, addr, mb.Addr, startUpstream(t), "A")
	a.mail = mb
	b := a.browser()
	start := time.Now()
	r := b.get("/tickets/1")
	if r.Status != http.StatusServiceUnavailable || !strings.Contains(r.Body, "temporarily unavailable") {
		t.Fatalf("with Redis down at start: %d\n%s", r.Status, r.Body)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("the refusal took %s", d)
	}

	redis := runRedis(t, bin, port, t.TempDir(), false)
	t.Cleanup(func() { _ = redis.Process.Kill(); _ = redis.Wait() })
	eventually(t, 30*time.Second, "the portal to serve", func() bool {
		return b.get("/tickets/1").Status == http.StatusSeeOther
	})
	// The contacts file was imported once Redis answered.
	b.signIn("lee@acme.example", "/tickets/1")
}
