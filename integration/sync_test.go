package integration

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A scripted directory sync: PUT contacts?mode=replace&source=directory
// (and `caddy portal contacts import --replace`) makes the batch the whole
// of the directory's contacts. A directory contact it leaves out is
// disabled and loses its open session at once; manual contacts are left
// alone; the counts are answered and audited with the caller.
func TestDirectorySyncReplace(t *testing.T) {
	g := newGateway(t)
	g.start()
	jane := g.browser() // c-1, a directory contact of the contacts_file
	jane.signIn("jane@acme.example", "/tickets/1")
	sam := g.browser() // c-2, manual
	sam.signIn("sam@acme.example", "/tickets/1")
	if s, body := g.adminDo(http.MethodPut, "/portal/workspaces/acme/contacts", "application/json",
		[]byte(`[{"id":"k-1","email":"kim@acme.example","source":"directory","directory_id":"d-9"}]`)); s != http.StatusOK {
		t.Fatalf("PUT kim: %d %s", s, body)
	}

	batch := `[{"id":"k-1","email":"kim@acme.example","name":"Kim Park","directory_id":"d-9"},
		{"id":"n-1","email":"new@acme.example","name":"New Hire"}]`
	for _, bad := range []string{"?mode=replace", "?mode=replace&source=hr", "?mode=merge", "?source=directory"} {
		if s, body := g.adminDo(http.MethodPut, "/portal/workspaces/acme/contacts"+bad, "application/json", []byte(batch)); s != http.StatusBadRequest {
			t.Fatalf("PUT contacts%s: %d %s, want 400", bad, s, body)
		}
	}
	s, body := g.adminDo(http.MethodPut, "/portal/workspaces/acme/contacts?mode=replace&source=directory", "application/json", []byte(batch))
	if s != http.StatusOK || strings.TrimSpace(body) != `{"upserted":2,"disabled":1,"unchanged":0}` {
		t.Fatalf("replace: %d %s", s, body)
	}
	if r := jane.get("/tickets/1"); r.Status != http.StatusSeeOther {
		t.Fatalf("jane, left out of the directory, with her open session: %d", r.Status)
	}
	if r := sam.get("/tickets/1"); r.Status != http.StatusOK {
		t.Fatalf("sam, a manual contact: %d", r.Status)
	}
	s, body = g.adminDo(http.MethodGet, "/portal/workspaces/acme/contacts/n-1", "", nil)
	if s != http.StatusOK || !strings.Contains(body, `"source":"directory"`) {
		t.Fatalf("the new contact: %d %s", s, body)
	}
	g.browser().signIn("new@acme.example", "/tickets/2")

	ev := g.audit(t, "event=contacts_imported&limit=1")
	if len(ev) != 1 || ev[0].Count != 2 || !strings.HasPrefix(ev[0].Actor, "127.0.0.1:") ||
		ev[0].Reason != "mode=replace source=directory: 2 upserted, 1 disabled, 0 unchanged" {
		t.Fatalf("contacts_imported: %+v", ev)
	}
	changed := g.audit(t, "event=contact_changed&contact_id=c-1")
	if len(changed) != 1 || changed[0].Reason != "status active -> disabled" {
		t.Fatalf("contact_changed for jane: %+v", changed)
	}

	// The CLI: the same batch again changes nothing.
	file := filepath.Join(g.dir, "directory.json")
	if err := os.WriteFile(file, []byte(batch), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := g.cli(t, "contacts", "import", "--replace", file)
	if err != nil || !strings.Contains(out, "0 contacts upserted, 0 disabled and signed out, 2 unchanged") {
		t.Fatalf("contacts import --replace: %v\n%s", err, out)
	}
	if out, err := g.cli(t, "contacts", "import", "--source", "directory", file); err == nil {
		t.Fatalf("--source without --replace succeeded:\n%s", out)
	}
}
