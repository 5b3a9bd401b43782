package redisstore

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/kdesk/portalgate/storage"
)

// endContactLua defines the Lua functions the contact scripts share:
// end_sessions, end_codes and put_contacts. The scripts start with it.
//
//go:embed scripts/contacts_lib.lua
var endContactLua string

// putContacts checks the whole batch first and writes only if every
// contact fits, so a conflict leaves Redis unchanged (a script is atomic
// but does not roll back). It mirrors Badger's transaction: contacts apply
// in order, each replacing its old indexes, and a new email must not
// belong to another contact; a contact written as disabled, or whose email
// changes, loses its sessions and codes in the same script. ARGV: the
// workspace's key prefix, then id, email, directory id and JSON per
// contact. Returns {1, then id hash and JSON of each ended session}, or
// {0, index of the contact, id of the email's owner}.
//
//go:embed scripts/put_contacts.lua
var putContactsLua string

var putContacts = newScript(importGuardLua + endContactLua + putContactsLua)

// PutContacts implements storage.Store. A batch larger than one step goes
// through importContacts; a smaller one is one script, which waits for an
// import running meanwhile.
func (s *Store) PutContacts(ctx context.Context, ws string, contacts []storage.Contact) error {
	if len(contacts) == 0 {
		return nil
	}
	if len(contacts) > importChunk {
		return s.importContacts(ctx, ws, func(stored map[string]storage.Contact) ([]storage.Contact, error) {
			return contacts, storage.CheckEmails(stored, contacts)
		})
	}
	for since := time.Now(); ; {
		err := s.putContacts(ctx, ws, contacts)
		if !errors.Is(err, errImporting) {
			return err
		}
		if err := s.waitImport(ctx, ws, since); err != nil {
			return err
		}
	}
}

// putContacts writes contacts in one script.
func (s *Store) putContacts(ctx context.Context, ws string, contacts []storage.Contact) error {
	now := s.now().UTC()
	pre := s.ws(ws)
	keys := []string{pre + "ids"}
	args := make([]string, 1, 1+4*len(contacts))
	args[0] = pre
	written := make([]string, 0, len(contacts))
	for _, c := range contacts {
		c.UpdatedAt = now
		doc, err := json.Marshal(c)
		if err != nil {
			return err
		}
		args = append(args, c.ID, c.Email, c.DirectoryID, string(doc))
		keys = append(keys, s.contactKey(ws, c.ID))
		written = append(written, s.contactKey(ws, c.ID))
	}
	r, err := s.runFor(ctx, time.Duration(len(contacts))*perContact, putContacts, keys, args...)
	s.written.mark(written...)
	if err != nil {
		return err
	}
	res, err := r.ToArray()
	if err != nil || len(res) == 0 {
		return fmt.Errorf("redis: put contacts: unexpected reply: %v", err)
	}
	switch ok, _ := res[0].AsInt64(); ok {
	case 1:
		_, err := s.endedSessions(ws, res[1:])
		return err
	case 2:
		return errImporting
	}
	return s.contactConflict(contacts, res)
}

// contactConflict is the error of put_contacts' reply {0, index, owner}.
func (s *Store) contactConflict(contacts []storage.Contact, res []rueidis.RedisMessage) error {
	if len(res) != 3 {
		return errors.New("redis: put contacts: unexpected reply")
	}
	i, _ := res[1].AsInt64()
	other, _ := res[2].ToString()
	if i < 0 || int(i) >= len(contacts) {
		return errors.New("redis: put contacts: unexpected reply")
	}
	c := contacts[i]
	return fmt.Errorf("contact %s: email %s already belongs to contact %s", c.ID, c.Email, other)
}

// replaceContacts is ReplaceContacts in one script: it upserts the given
// contacts that differ from what is stored (put_contacts), then disables
// every other active contact of the set (by origin, else by source),
// ending their sessions and codes. KEYS: ids set. ARGV: workspace key
// prefix, origin, source, now (RFC 3339),
// then id, email, directory id and JSON per contact. Returns {1, upserted,
// disabled, unchanged, then id hash and JSON of each ended session}, or
// put_contacts' conflict.
//
//go:embed scripts/replace_contacts.lua
var replaceContactsLua string

var replaceContacts = newScript(importGuardLua + endContactLua + replaceContactsLua)

// ReplaceContacts implements storage.Store. Over more contacts than one
// step writes (the new list and the stored ones together) it goes through
// importContacts; otherwise it is one script, which waits for an import
// running meanwhile.
func (s *Store) ReplaceContacts(ctx context.Context, ws string, set storage.ContactSet, contacts []storage.Contact) (storage.ReplaceResult, error) {
	if err := set.Validate(); err != nil {
		return storage.ReplaceResult{}, err
	}
	for since := time.Now(); ; {
		large, err := s.large(ctx, ws, len(contacts), true)
		if err != nil {
			return storage.ReplaceResult{}, err
		}
		if large {
			var res storage.ReplaceResult
			err := s.importContacts(ctx, ws, func(stored map[string]storage.Contact) ([]storage.Contact, error) {
				var write []storage.Contact
				write, res = storage.PlanReplace(stored, set, contacts)
				return write, storage.CheckEmails(stored, write)
			})
			if err != nil {
				return storage.ReplaceResult{}, err
			}
			return res, nil
		}
		res, err := s.replaceContacts(ctx, ws, set, contacts)
		if !errors.Is(err, errImporting) {
			return res, err
		}
		if err := s.waitImport(ctx, ws, since); err != nil {
			return storage.ReplaceResult{}, err
		}
	}
}

// replaceContacts is ReplaceContacts in one script.
func (s *Store) replaceContacts(ctx context.Context, ws string, set storage.ContactSet, contacts []storage.Contact) (storage.ReplaceResult, error) {
	now := s.now().UTC()
	pre := s.ws(ws)
	args := make([]string, 4, 4+4*len(contacts))
	args[0], args[1], args[2], args[3] = pre, set.Origin, set.Source, now.Format(time.RFC3339Nano)
	for _, c := range contacts {
		c.UpdatedAt = now
		set.Mark(&c)
		doc, err := json.Marshal(c)
		if err != nil {
			return storage.ReplaceResult{}, err
		}
		args = append(args, c.ID, c.Email, c.DirectoryID, string(doc))
	}
	r, err := s.runFor(ctx, time.Duration(len(contacts))*perContact, replaceContacts, []string{pre + "ids"}, args...)
	if err != nil {
		return storage.ReplaceResult{}, err
	}
	res, err := r.ToArray()
	if err != nil || len(res) == 0 {
		return storage.ReplaceResult{}, fmt.Errorf("redis: replace contacts: unexpected reply: %v", err)
	}
	switch ok, _ := res[0].AsInt64(); ok {
	case 2:
		return storage.ReplaceResult{}, errImporting
	case 0:
		return storage.ReplaceResult{}, s.contactConflict(contacts, res)
	}
	if len(res) < 4 {
		return storage.ReplaceResult{}, errors.New("redis: replace contacts: unexpected reply")
	}
	var out storage.ReplaceResult
	n := [3]int64{}
	for i := range n {
		n[i], _ = res[1+i].AsInt64()
	}
	out.Upserted, out.Disabled, out.Unchanged = int(n[0]), int(n[1]), int(n[2])
	// Every contact of the workspace may have changed: mark them all.
	list, err := s.Contacts(ctx, ws)
	if err == nil {
		keys := make([]string, len(list))
		for i, c := range list {
			keys[i] = s.contactKey(ws, c.ID)
		}
		s.written.mark(keys...)
	}
	_, err = s.endedSessions(ws, res[4:])
	return out, err
}

// decodeContact is a contact's record as Redis holds it.
func decodeContact(raw string) (storage.Contact, error) {
	var c storage.Contact
	if err := json.Unmarshal([]byte(raw), &c); err != nil {
		return storage.Contact{}, fmt.Errorf("redis: contact: %w", err)
	}
	return c, nil
}

// Contact implements storage.Store. It is on the hot path: served from the
// client-side cache, which Redis invalidates on every change.
func (s *Store) Contact(ctx context.Context, ws, id string) (storage.Contact, error) {
	c, ok, err := record(ctx, s, s.contacts, s.contactKey(ws, id), decodeContact)
	if err != nil {
		return storage.Contact{}, err
	}
	if !ok {
		return storage.Contact{}, storage.ErrNotFound
	}
	return c, nil
}

// contactByIndexLua reads an index and the contact it names in one step.
//
//go:embed scripts/contact_by_index.lua
var contactByIndexLua string

var contactByIndexScript = newScript(contactByIndexLua)

// contactByIndex follows an index key to the contact; match says whether
// the record fits the index. On a single server or Sentinel that is one
// script (a sign-in's lookup takes one round trip, not two). On a
// Cluster the index and the record are read one after the other, so a
// contact changed in between is looked up again.
func (s *Store) contactByIndex(ctx context.Context, ws, key string, match func(storage.Contact) bool) (storage.Contact, error) {
	if !s.clustered() {
		r, err := s.run(ctx, contactByIndexScript, []string{key}, s.contactKey(ws, ""))
		if rueidis.IsRedisNil(err) {
			return storage.Contact{}, storage.ErrNotFound
		}
		if err != nil {
			return storage.Contact{}, err
		}
		raw, err := r.ToString()
		if err != nil {
			return storage.Contact{}, fmt.Errorf("redis: contact by index: %w", err)
		}
		c, err := decodeContact(raw)
		if err != nil {
			return storage.Contact{}, err
		}
		if !match(c) {
			return storage.Contact{}, storage.ErrNotFound
		}
		return c, nil
	}
	for range 3 {
		id, ok, err := s.getString(ctx, key)
		if err != nil {
			return storage.Contact{}, err
		}
		if !ok {
			return storage.Contact{}, storage.ErrNotFound
		}
		c, err := s.Contact(ctx, ws, id)
		if err == nil && match(c) {
			return c, nil
		}
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return storage.Contact{}, err
		}
	}
	return storage.Contact{}, storage.ErrNotFound
}

// ContactByEmail implements storage.Store.
func (s *Store) ContactByEmail(ctx context.Context, ws, email string) (storage.Contact, error) {
	email = strings.ToLower(strings.TrimSpace(email))
	return s.contactByIndex(ctx, ws, s.ws(ws)+"ce:"+email, func(c storage.Contact) bool { return c.Email == email })
}

// ContactByDirectoryID implements storage.Store.
func (s *Store) ContactByDirectoryID(ctx context.Context, ws, dirID string) (storage.Contact, error) {
	if dirID == "" {
		return storage.Contact{}, storage.ErrNotFound
	}
	return s.contactByIndex(ctx, ws, s.ws(ws)+"cd:"+dirID, func(c storage.Contact) bool { return c.DirectoryID == dirID })
}

// Contacts implements storage.Store.
func (s *Store) Contacts(ctx context.Context, ws string) ([]storage.Contact, error) {
	return listJSON[storage.Contact](ctx, s, s.ws(ws)+"ids", func(id string) string { return s.contactKey(ws, id) }, "contact")
}

// listJSON reads every JSON record whose id is in the set at setKey,
// ordered by id, in bounded calls (SSCAN, then MGET of a thousand keys at a
// time; a workspace's keys share a hash tag), so that listing a large
// workspace never holds Redis for long; a record deleted meanwhile is left
// out.
func listJSON[T any](ctx context.Context, s *Store, setKey string, key func(id string) string, what string) ([]T, error) {
	seen := map[string]bool{}
	var ids []string
	for cursor := uint64(0); ; {
		r, err := s.do(ctx, func(b rueidis.Builder) rueidis.Completed {
			return b.Sscan().Key(setKey).Cursor(cursor).Count(listBatch).Build()
		})
		if err != nil {
			return nil, err
		}
		e, err := r.AsScanEntry()
		if err != nil {
			return nil, err
		}
		for _, id := range e.Elements {
			if !seen[id] { // SSCAN may return an element twice
				seen[id] = true
				ids = append(ids, id)
			}
		}
		if cursor = e.Cursor; cursor == 0 {
			break
		}
	}
	sort.Strings(ids)
	out := make([]T, 0, len(ids))
	for start := 0; start < len(ids); start += listBatch {
		part := ids[start:min(start+listBatch, len(ids))]
		keys := make([]string, len(part))
		for i, id := range part {
			keys[i] = key(id)
		}
		r, err := s.do(ctx, func(b rueidis.Builder) rueidis.Completed { return b.Mget().Key(keys...).Build() })
		if err != nil {
			return nil, err
		}
		vals, err := r.ToArray()
		if err != nil {
			return nil, err
		}
		for i, v := range vals {
			raw, err := v.ToString()
			if err != nil {
				continue // deleted since the scan
			}
			var rec T
			if err := json.Unmarshal([]byte(raw), &rec); err != nil {
				return nil, fmt.Errorf("redis: %s %s: %w", what, part[i], err)
			}
			out = append(out, rec)
		}
	}
	return out, nil
}

// listBatch is how many ids one SSCAN or MGET of a listing covers.
const listBatch = 1000

// deleteContact removes a contact, its indexes (where they still point to
// it), every code of its sign-in flows and every session. KEYS: contact,
// ids set. ARGV: workspace key prefix, id. Returns {0} when there was no
// such contact, else {1, then id hash and JSON of each ended session}.
//
//go:embed scripts/delete_contact.lua
var deleteContactLua string

var deleteContact = newScript(importGuardLua + endContactLua + deleteContactLua)

// DeleteContact implements storage.Store. It waits for an import running
// meanwhile.
func (s *Store) DeleteContact(ctx context.Context, ws, id string) (int, error) {
	for since := time.Now(); ; {
		n, err := s.deleteContact(ctx, ws, id)
		if !errors.Is(err, errImporting) {
			return n, err
		}
		if err := s.waitImport(ctx, ws, since); err != nil {
			return 0, err
		}
	}
}

func (s *Store) deleteContact(ctx context.Context, ws, id string) (int, error) {
	pre := s.ws(ws)
	key := s.contactKey(ws, id)
	r, err := s.run(ctx, deleteContact, []string{key, pre + "ids"}, pre, id)
	s.written.mark(key)
	if err != nil {
		return 0, err
	}
	res, err := r.ToArray()
	if err != nil || len(res) == 0 {
		return 0, fmt.Errorf("redis: delete contact: unexpected reply: %v", err)
	}
	switch ok, _ := res[0].AsInt64(); ok {
	case 2:
		return 0, errImporting
	case 0:
		return 0, storage.ErrNotFound
	}
	return s.endedSessions(ws, res[1:])
}

// endedSessions takes the id hash and JSON pairs of the sessions a script
// ended: it marks their keys as this instance's writes, so its next reads
// skip the caches, and counts those that were still live.
func (s *Store) endedSessions(ws string, pairs []rueidis.RedisMessage) (int, error) {
	if len(pairs)%2 != 0 {
		return 0, errors.New("redis: ended sessions: unexpected reply")
	}
	now := s.now()
	n := 0
	keys := make([]string, 0, len(pairs)/2)
	for i := 0; i < len(pairs); i += 2 {
		h, err := pairs[i].ToString()
		if err != nil {
			return 0, err
		}
		keys = append(keys, s.sessionKey(ws, h))
		raw, err := pairs[i+1].ToString()
		if err != nil {
			continue
		}
		if sess, err := decodeSession(raw); err == nil && now.Before(sess.Expiry()) {
			n++
		}
	}
	s.written.mark(keys...)
	return n, nil
}
