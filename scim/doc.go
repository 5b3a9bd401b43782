// Package scim is portalgate's SCIM 2.0 service provider (RFC 7643, RFC
// 7644): the customer's directory (Microsoft Entra ID, Okta, OneLogin,
// JumpCloud, Google) pushes its users and groups to a workspace, and the
// contacts who may sign in follow the directory.
//
// Handler serves Users, Groups, ServiceProviderConfig, ResourceTypes and
// Schemas under a path prefix, as application/scim+json. It knows nothing
// of Caddy or of how the caller was authenticated: the gate checks the
// bearer token and the rate limit first (handlers/scim.go), then hands the
// request over.
//
// # Users and contacts
//
// A User is a storage.Contact: the SCIM id is the contact id (made here
// for new users), externalId is the directory id, the primary emails value
// (else userName, when it is an address) is the email, displayName (else
// name.formatted, else givenName familyName) is the name, active is the
// status and the source is always directory. The whole resource as the
// directory wrote it is kept in Contact.SCIM, so attributes the contact
// has no field for (title, phoneNumbers, the enterprise extension, …) are
// returned as written and an IdP reading back sees no drift.
//
// # Groups and access
//
// A Group is a storage.Group whose members are contact ids. When Handler
// names groups (the scim block's groups option), a contact is active only
// while its User is active and it is a member of at least one of them:
// taking a user out of the last such group, or deleting the group,
// disables the contact at once, and adding it back enables it.
//
// # Deprovisioning
//
// active false (PATCH or PUT), DELETE, or leaving every named group
// disables or deletes the contact and ends its sessions, all through one
// function (deprovision), the one place that asks the store to do it.
//
// # Quirks accepted on purpose
//
// PATCH op values in any case ("Replace", "Add", as Entra ID sends them),
// path-less value objects whose keys are paths ("name.givenName"),
// active as the strings "True" and "False", emails[type eq "work"].value
// paths that create the work email when there is none, and members
// removed by a value list as well as by a filter.
package scim
