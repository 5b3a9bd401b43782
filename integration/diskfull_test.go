package integration

import (
	"bytes"
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
)

// TestBadgerDiskFull runs a real Caddy with its Badger store on a small
// tmpfs that then fills up: Caddy keeps running, a new sign-in is refused
// as "temporarily unavailable", a contact already signed in keeps working,
// and once space is freed sign-in works again by itself. It needs root
// (to mount the tmpfs); elsewhere it is skipped.
func TestBadgerDiskFull(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", data, "tmpfs", 0, "size=96m"); err != nil {
		if os.Getenv("CI") != "" && os.Geteuid() == 0 {
			t.Fatalf("mounting a tmpfs as root: %v", err)
		}
		t.Skipf("no tmpfs here (needs root): %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(data, syscall.MNT_DETACH) })

	mb := startMailbox(t, "")
	up := startUpstream(t)
	g := &gateway{t: t, dir: dir, httpPort: freePort(t), adminPort: freePort(t), up: up, mail: mb}
	contacts := filepath.Join(dir, "contacts.json")
	if err := os.WriteFile(contacts, []byte(defaultContacts), 0o600); err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(mb.Addr)
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
		storage_dir %s/portal
		mail smtp {
			host %s
			port %s
			from support@acme.example
			tls none
		}
		workspace acme {
			url http://127.0.0.1:%d
			contacts_file %s
		}
	}
}

http://127.0.0.1:%d {
	portal_auth acme
	reverse_proxy %s
}
`, g.adminPort, dir, dir, data, host, port, g.httpPort, contacts, g.httpPort, strings.TrimPrefix(up.URL, "http://"))
	file := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(file, []byte(cf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(builtCaddy(t), "run", "--config", file, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "caddy.log"))
			t.Logf("caddy output:\n%s\nlog:\n%s", out.String(), b)
		}
	})
	g.waitUp()

	jane := g.browser()
	jane.signIn("jane@acme.example", "/tickets")

	// Fill the disk.
	filler := filepath.Join(data, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	chunk := bytes.Repeat([]byte{1}, 1<<20)
	for {
		if _, err := f.Write(chunk); err != nil {
			break
		}
	}
	f.Close()

	// New sign-ins write: refused, closed, no crash.
	refused := 0
	for i := range 20 {
		b := g.browser()
		page := b.get("/_portal/signin")
		if page.Status != http.StatusOK && page.Status != http.StatusServiceUnavailable {
			t.Fatalf("sign-in page with the disk full: %d", page.Status)
		}
		if page.Status == http.StatusOK {
			r := b.post("/_portal/signin", map[string][]string{"csrf": {csrfOf(t, page.Body)}, "email": {fmt.Sprintf("nobody%d@acme.example", i)}})
			if r.Status == http.StatusServiceUnavailable && strings.Contains(r.Body, "temporarily unavailable") {
				refused++
			} else if r.Status != http.StatusSeeOther {
				t.Fatalf("sign-in with the disk full: %d\n%s", r.Status, r.Body)
			}
		} else {
			refused++
		}
	}
	select {
	case err := <-exited:
		t.Fatalf("caddy exited with the disk full: %v", err)
	default:
	}
	if refused == 0 {
		t.Log("every sign-in still fit in Badger's memtable: no write failed")
	}
	// The contact already signed in keeps working (reads only).
	if r := jane.get("/tickets"); r.Status != http.StatusOK {
		t.Fatalf("signed-in contact with the disk full: %d", r.Status)
	}

	// Space comes back: sign-in works again by itself.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "sign-in to work again", func() bool {
		b := g.browser()
		page := b.get("/_portal/signin")
		if page.Status != http.StatusOK {
			return false
		}
		r := b.post("/_portal/signin", map[string][]string{"csrf": {csrfOf(t, page.Body)}, "email": {"sam@acme.example"}})
		return r.Status == http.StatusSeeOther
	})
	select {
	case err := <-exited:
		t.Fatalf("caddy exited: %v", err)
	default:
	}
	t.Logf("%d of 20 sign-ins refused while the disk was full", refused)
}
