package storage

import (
	"context"
	"sort"
)

// ContactPager is a store that lists a workspace's contacts a page at a
// time without reading the rest: the cost of a page does not grow with the
// workspace. ContactsPage uses it where the store has it.
type ContactPager interface {
	// ContactsAfter returns up to limit contacts of the workspace whose
	// ids sort after after (from the first when after is empty), ordered
	// by id.
	ContactsAfter(ctx context.Context, workspace, after string, limit int) ([]Contact, error)
}

// ContactsPage returns up to limit contacts of the workspace whose ids
// sort after the cursor after, ordered by id, and the cursor of the next
// page: the last id returned, or "" when no contact follows. A store
// without ContactPager is read whole and cut.
func ContactsPage(ctx context.Context, s Contacts, workspace, after string, limit int) ([]Contact, string, error) {
	limit = max(limit, 1)
	var cs []Contact
	if p, ok := s.(ContactPager); ok {
		var err error
		if cs, err = p.ContactsAfter(ctx, workspace, after, limit+1); err != nil {
			return nil, "", err
		}
	} else {
		all, err := s.Contacts(ctx, workspace)
		if err != nil {
			return nil, "", err
		}
		cs = ContactsFrom(all, after, limit+1)
	}
	if len(cs) <= limit {
		return cs, "", nil
	}
	cs = cs[:limit]
	return cs, cs[limit-1].ID, nil
}

// ContactsFrom cuts a listing ordered by id to up to limit contacts whose
// ids sort after after.
func ContactsFrom(all []Contact, after string, limit int) []Contact {
	i := sort.Search(len(all), func(i int) bool { return all[i].ID > after })
	return all[i:min(len(all), i+limit)]
}
