package storagetest

import (
	"slices"
	"testing"

	"github.com/kdesk/portalgate/storage"
)

// ---------------------------------------------------------------- groups

func sameGroup(a, b storage.Group) bool {
	return a.ID == b.ID && a.Workspace == b.Workspace && a.DisplayName == b.DisplayName &&
		a.ExternalID == b.ExternalID && slices.Equal(a.Members, b.Members)
}

func testGroups(t *testing.T, open Opener) {
	const ws, other = "acme", "globex"
	users := storage.Group{ID: "g-1", Workspace: ws, DisplayName: "Portal Users", ExternalID: "entra-g1", Members: []string{"c-1", "c-2"}}
	partners := storage.Group{ID: "g-2", Workspace: ws, DisplayName: "Partners"}

	t.Run("PutGetListDelete", func(t *testing.T) {
		ctx, s, clock := setup(t, open)
		must(t, "PutGroup", s.PutGroup(ctx, partners))
		must(t, "PutGroup", s.PutGroup(ctx, users))
		must(t, "PutGroup other workspace", s.PutGroup(ctx, storage.Group{ID: "g-1", Workspace: other, DisplayName: "Theirs"}))

		g, err := s.Group(ctx, ws, "g-1")
		must(t, "Group", err)
		if !sameGroup(g, users) || !g.UpdatedAt.Equal(clock.Now().UTC()) {
			t.Errorf("Group = %+v, want %+v at %v", g, users, clock.Now())
		}
		list, err := s.Groups(ctx, ws)
		must(t, "Groups", err)
		if len(list) != 2 || !sameGroup(list[0], users) || !sameGroup(list[1], partners) {
			t.Errorf("Groups = %+v, want g-1, g-2", list)
		}

		users2 := users
		users2.Members = []string{"c-2"}
		must(t, "PutGroup replace", s.PutGroup(ctx, users2))
		g, err = s.Group(ctx, ws, "g-1")
		must(t, "Group", err)
		if !sameGroup(g, users2) {
			t.Errorf("Group after replace = %+v, want %+v", g, users2)
		}

		must(t, "DeleteGroup", s.DeleteGroup(ctx, ws, "g-1"))
		_, err = s.Group(ctx, ws, "g-1")
		wantNotFound(t, "Group after delete", err)
		wantNotFound(t, "DeleteGroup twice", s.DeleteGroup(ctx, ws, "g-1"))
		list, err = s.Groups(ctx, ws)
		must(t, "Groups", err)
		if len(list) != 1 || list[0].ID != "g-2" {
			t.Errorf("Groups after delete = %+v, want g-2", list)
		}
		g, err = s.Group(ctx, other, "g-1")
		must(t, "Group other workspace", err)
		if g.DisplayName != "Theirs" {
			t.Errorf("other workspace's group = %+v", g)
		}
	})

	t.Run("Empty", func(t *testing.T) {
		ctx, s, _ := setup(t, open)
		list, err := s.Groups(ctx, ws)
		must(t, "Groups", err)
		if len(list) != 0 {
			t.Errorf("Groups = %+v, want none", list)
		}
		_, err = s.Group(ctx, ws, "nope")
		wantNotFound(t, "Group", err)
	})

	t.Run("ContactKeepsSCIMAttributes", func(t *testing.T) {
		ctx, s, _ := setup(t, open)
		raw := storage.RawJSON(`{"userName":"jane@acme.example","title":"Engineer","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"employeeNumber":"42"}}`)
		c := normalized(t, storage.Contact{ID: "c-1", Email: "jane@acme.example", Source: storage.SourceDirectory, SCIM: raw})[0]
		must(t, "PutContacts", s.PutContacts(ctx, ws, []storage.Contact{c}))
		got, err := s.Contact(ctx, ws, "c-1")
		wantContact(t, "Contact", got, err, c)
		list, err := s.Contacts(ctx, ws)
		must(t, "Contacts", err)
		if len(list) != 1 || list[0].SCIM != raw {
			t.Errorf("Contacts = %+v, want the SCIM attributes kept", list)
		}
	})
}
