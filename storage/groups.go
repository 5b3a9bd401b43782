package storage

import (
	"context"
	"time"
)

// Groups keeps the groups synced from the customer's directory (SCIM
// Groups), whose members are contacts. A workspace that names groups in
// its scim block admits only their members.
type Groups interface {
	// PutGroup creates or replaces a group of g.Workspace.
	PutGroup(ctx context.Context, g Group) error
	// Group returns one group by id.
	Group(ctx context.Context, workspace, id string) (Group, error)
	// Groups lists every group of a workspace, ordered by id.
	Groups(ctx context.Context, workspace string) ([]Group, error)
	// DeleteGroup removes a group. ErrNotFound if absent. The members'
	// contacts are not touched.
	DeleteGroup(ctx context.Context, workspace, id string) error
}

// Group is a directory group of a workspace.
type Group struct {
	// ID names the group in the workspace (the SCIM id), made by the
	// service provider when the group is created.
	ID string `json:"id"`
	// Workspace names the workspace the group belongs to.
	Workspace string `json:"workspace"`
	// DisplayName is the group's name in the directory, such as "Portal
	// Users"; the scim block's groups option names groups by it.
	DisplayName string `json:"display_name"`
	// ExternalID is the directory's own id of the group, when it sent one.
	ExternalID string `json:"external_id,omitempty"`
	// Members are the ids of the contacts in the group, without repeats.
	Members []string `json:"members,omitempty"`
	// UpdatedAt is set by the store, to its clock, on every write.
	UpdatedAt time.Time `json:"updated_at,omitzero"`
}

// RawJSON is a JSON value kept as written, such as the SCIM attributes of
// a contact that have no field of their own. It is a string so that the
// records holding it stay comparable; it marshals as the JSON value
// itself, not as a string.
type RawJSON string

// MarshalJSON writes the value itself; an empty RawJSON is null.
func (r RawJSON) MarshalJSON() ([]byte, error) {
	if r == "" {
		return []byte("null"), nil
	}
	return []byte(r), nil
}

// UnmarshalJSON keeps the value as written; null is empty.
func (r *RawJSON) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*r = ""
		return nil
	}
	*r = RawJSON(b)
	return nil
}
