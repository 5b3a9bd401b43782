package integration

import (
	"encoding/json"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kdesk/portalgate/storage/storagetest"
)

// importSize is how many contacts the large-import tests write: 5,000 by
// default, PORTALGATE_IMPORT_CONTACTS (such as 100000) outside CI.
func importSize(t *testing.T) int {
	if n, _ := strconv.Atoi(os.Getenv("PORTALGATE_IMPORT_CONTACTS")); n > 0 {
		return n
	}
	return 5000
}

// A directory far larger than one Badger transaction comes in through
// contacts_file at start and through the admin API, and its contacts can
// sign in.
func TestLargeDirectoryImport(t *testing.T) {
	n := importSize(t)
	dir := storagetest.Directory(n)
	b, err := json.Marshal(dir)
	if err != nil {
		t.Fatal(err)
	}
	g := newGateway(t)
	g.contacts = string(b)
	start := time.Now()
	g.start()
	t.Logf("Caddy started with a contacts_file of %d contacts in %s", n, time.Since(start).Round(time.Millisecond))
	last := dir[n-1]
	g.browser().signIn(last.Email, "/tickets/1")

	for i := range dir {
		dir[i].Name = "Renamed " + dir[i].ID
		dir[i].Origin = ""
	}
	b, _ = json.Marshal(dir)
	start = time.Now()
	status, body := g.adminDo(http.MethodPut, "/portal/workspaces/acme/contacts", "application/json", b)
	if status != http.StatusOK || !strings.Contains(body, `"upserted":`+strconv.Itoa(n)) {
		t.Fatalf("PUT contacts with %d contacts: %d %s", n, status, body)
	}
	t.Logf("PUT contacts of %d contacts answered in %s", n, time.Since(start).Round(time.Millisecond))
	status, body = g.adminDo(http.MethodGet, "/portal/workspaces/acme/contacts/"+last.ID, "", nil)
	if status != http.StatusOK || !strings.Contains(body, "Renamed "+last.ID) {
		t.Fatalf("GET the last contact: %d %s", status, body)
	}

	// The list a page at a time, by id, adds up to the whole directory.
	seen, cursor := 0, ""
	for pages := 0; ; pages++ {
		status, body := g.adminDo(http.MethodGet, "/portal/workspaces/acme/contacts?limit=1000&cursor="+cursor, "", nil)
		var page struct {
			Contacts []struct{ ID string } `json:"contacts"`
			Next     string                `json:"next_cursor"`
		}
		if status != http.StatusOK || json.Unmarshal([]byte(body), &page) != nil || pages > n/1000 {
			t.Fatalf("GET contacts?limit=1000&cursor=%s: %d %.200s", cursor, status, body)
		}
		if len(page.Contacts) > 0 && page.Contacts[0].ID != dir[seen].ID {
			t.Fatalf("page %d starts with %s, want %s", pages, page.Contacts[0].ID, dir[seen].ID)
		}
		seen += len(page.Contacts)
		if cursor = page.Next; cursor == "" {
			break
		}
	}
	if seen != n {
		t.Errorf("the pages hold %d contacts, want %d", seen, n)
	}
	if status, body := g.adminDo(http.MethodGet, "/portal/workspaces/acme/contacts?limit=0", "", nil); status != http.StatusBadRequest {
		t.Errorf("GET contacts?limit=0: %d %s, want 400", status, body)
	}
}
