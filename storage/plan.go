package storage

import (
	"fmt"
	"time"
)

// Planning a write of many contacts. A backend that cannot write a large
// import in one atomic step plans it first, against one reading of the
// stored contacts and while nothing else writes contacts: the plan is the
// list of final records, and an email conflict is found before anything
// is written, so a refused import changes nothing.

// SameContact reports whether a and b are the same contact, ignoring when
// each was written.
func SameContact(a, b Contact) bool {
	a.UpdatedAt, b.UpdatedAt = time.Time{}, time.Time{}
	return a == b
}

// CheckEmails finds, before anything is written, the conflict writing
// write over stored would meet: writes apply in order, each freeing its
// contact's old email, and a new email must not belong to another contact
// at that point.
func CheckEmails(stored map[string]Contact, write []Contact) error {
	owner := make(map[string]string, len(stored))
	emailOf := make(map[string]string, len(stored))
	for id, c := range stored {
		owner[c.Email], emailOf[id] = id, c.Email
	}
	for _, c := range write {
		if old, ok := emailOf[c.ID]; ok && owner[old] == c.ID {
			delete(owner, old)
		}
		if o, ok := owner[c.Email]; ok && o != c.ID {
			return fmt.Errorf("contact %s: email %s already belongs to contact %s", c.ID, c.Email, o)
		}
		owner[c.Email], emailOf[c.ID] = c.ID, c.Email
	}
	return nil
}

// PlanReplace is what ReplaceContacts writes over stored (by id): the
// contacts of the new list that differ from what is stored, marked as the
// set's, then every other active contact of the set, disabled. The email
// check is the caller's (CheckEmails).
func PlanReplace(stored map[string]Contact, set ContactSet, contacts []Contact) ([]Contact, ReplaceResult) {
	var res ReplaceResult
	var write []Contact
	listed := make(map[string]bool, len(contacts))
	for _, c := range contacts {
		set.Mark(&c)
		listed[c.ID] = true
		if old, ok := stored[c.ID]; ok && SameContact(old, c) {
			res.Unchanged++
			continue
		}
		write = append(write, c)
	}
	res.Upserted = len(write)
	for _, c := range stored {
		if set.Holds(c) && !listed[c.ID] && c.Active() {
			c.Status = StatusDisabled
			write = append(write, c)
			res.Disabled++
		}
	}
	return write, res
}
