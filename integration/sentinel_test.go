package integration

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestRedisSentinelFailover: three redis-server (a master and two
// replicas) and three sentinels on loopback ports; the master is killed
// under load. Requests fail closed in between and never pass without a
// session, the instance follows the new master within seconds, and mail
// queued before the failover is still delivered.
func TestRedisSentinelFailover(t *testing.T) {
	bin := redisBinary(t)
	start := func(args ...string) *exec.Cmd {
		t.Helper()
		cmd := exec.Command(bin, args...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}
	ports := make([]int, 6)
	for i := range ports {
		ports[i] = freePort(t)
	}
	master := start("--port", fmt.Sprint(ports[0]), "--bind", "127.0.0.1", "--save", "", "--dir", t.TempDir())
	for _, p := range ports[1:3] {
		start("--port", fmt.Sprint(p), "--bind", "127.0.0.1", "--save", "", "--dir", t.TempDir(), "--replicaof", "127.0.0.1", fmt.Sprint(ports[0]))
	}
	// replication is a field of a server's INFO replication.
	replication := func(port int, field string) string {
		out, _ := exec.Command("redis-cli", "-p", fmt.Sprint(port), "info", "replication").Output()
		for _, l := range strings.Split(string(out), "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(l), field+":"); ok {
				return v
			}
		}
		return ""
	}
	// Sentinels started once both replicas are linked find them in their
	// first look at the master, not 10 s later.
	for _, p := range ports[:3] {
		waitListening(t, fmt.Sprintf("127.0.0.1:%d", p))
	}
	eventually(t, 30*time.Second, "both replicas to link to the master", func() bool {
		return replication(ports[0], "connected_slaves") == "2"
	})
	var sentinels []string
	for _, p := range ports[3:] {
		dir := t.TempDir()
		conf := filepath.Join(dir, "sentinel.conf")
		if err := os.WriteFile(conf, []byte(fmt.Sprintf(`port %d
bind 127.0.0.1
dir %s
sentinel monitor mymaster 127.0.0.1 %d 2
sentinel down-after-milliseconds mymaster 1000
sentinel failover-timeout mymaster 4000
sentinel parallel-syncs mymaster 2
`, p, dir, ports[0])), 0o600); err != nil {
			t.Fatal(err)
		}
		start(conf, "--sentinel")
		sentinels = append(sentinels, fmt.Sprintf("127.0.0.1:%d", p))
	}
	for _, p := range ports[3:] {
		waitListening(t, fmt.Sprintf("127.0.0.1:%d", p))
	}
	// A sentinel learns the replicas from the master's INFO (every 10 s)
	// and the other sentinels from their hellos (every 2 s): one that
	// knows no replica when the master dies has nobody to promote, and the
	// election never ends. So wait until each knows both, and the others.
	sentinelSees := func(port int, field string) string {
		out, _ := exec.Command("redis-cli", "-p", fmt.Sprint(port), "sentinel", "master", "mymaster").Output()
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		for i := 0; i+1 < len(lines); i += 2 {
			if strings.TrimSpace(lines[i]) == field {
				return strings.TrimSpace(lines[i+1])
			}
		}
		return ""
	}
	discovering := time.Now()
	eventually(t, 30*time.Second, "every sentinel to know both replicas and the other sentinels", func() bool {
		for _, p := range ports[3:] {
			if sentinelSees(p, "num-slaves") != "2" || sentinelSees(p, "num-other-sentinels") != "2" {
				return false
			}
		}
		return true
	})
	t.Logf("the sentinels knew each other and both replicas after %s", time.Since(discovering).Round(time.Millisecond))

	mb := startMailbox(t, "")
	up := startUpstream(t)
	a := startInstance(t, strings.Join(sentinels, " ")+"\n\t\t\tmaster_name mymaster", mb.Addr, up, "A")
	a.mail = mb
	jane := a.browser()
	jane.signIn("jane@acme.example", "/tickets/1")

	// Mail queued while SMTP refuses, before the failover.
	mb.Reject(451)
	sam := a.browser()
	sam.get("/tickets/2")
	samCSRF := sam.submitEmail("sam@acme.example")
	// What survives a failover is what reached a replica (replication is
	// asynchronous): wait until both have everything the master has.
	eventually(t, 20*time.Second, "the replicas to catch up", func() bool {
		want := replication(ports[0], "master_repl_offset")
		return want != "" && replication(ports[1], "master_repl_offset") == want && replication(ports[2], "master_repl_offset") == want
	})

	// Load from a signed-in and an anonymous client while the master dies.
	var passedAnonymously, served, refused atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		anon := a.browser()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if r := anon.get("/tickets/9"); r.Status == http.StatusOK {
				passedAnonymously.Add(1)
			}
			switch r := jane.get("/tickets/1"); r.Status {
			case http.StatusOK:
				served.Add(1)
			case http.StatusServiceUnavailable:
				refused.Add(1)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	killed := time.Now()
	_ = master.Process.Kill()
	// The sentinels' election takes its own time (a failed one is retried
	// after twice failover-timeout, longer on a loaded machine); what is
	// the instance's is how soon it follows once they have elected.
	eventually(t, 90*time.Second, "the sentinels to elect a new master", func() bool {
		out, err := exec.Command("redis-cli", "-p", fmt.Sprint(ports[3]), "sentinel", "get-master-addr-by-name", "mymaster").Output()
		return err == nil && !strings.Contains(string(out), fmt.Sprint(ports[0]))
	})
	elected := time.Now()
	eventually(t, 30*time.Second, "a sign-in to work on the new master", func() bool {
		b := a.browser()
		if r := b.get("/tickets/3"); r.Status != http.StatusSeeOther {
			return false
		}
		page := b.get("/_portal/signin")
		if page.Status != http.StatusOK {
			return false
		}
		r := b.post("/_portal/signin", map[string][]string{"csrf": {csrfOf(t, page.Body)}, "email": {"pat@acme.example"}})
		return r.Status == http.StatusSeeOther
	})
	followed := time.Since(elected)
	close(stop)
	<-done
	if passedAnonymously.Load() != 0 {
		t.Fatalf("%d anonymous requests reached the portal during the failover", passedAnonymously.Load())
	}
	t.Logf("sentinels elected a new master %s after the kill; the instance followed %s later; meanwhile %d signed-in requests served, %d refused (503)",
		elected.Sub(killed).Round(100*time.Millisecond), followed.Round(100*time.Millisecond), served.Load(), refused.Load())

	// Nothing queued was lost: SMTP comes back, sam's code and pat's arrive.
	mb.Reject(0)
	got := map[string]string{}
	for len(got) < 2 {
		// sam's message has been retried with backoff through the outage
		// (up to 16 s apart by now).
		m := mb.wait(t, 60*time.Second)
		got[m.To[0]] = m.Code()
	}
	if r := sam.enterCode(samCSRF, got["sam@acme.example"]); r.Status != http.StatusSeeOther {
		t.Fatalf("sam's code queued before the failover: %d\n%s", r.Status, r.Body)
	}
	if r := jane.get("/tickets/1"); r.Status != http.StatusOK {
		t.Fatalf("jane after the failover: %d", r.Status)
	}
}
