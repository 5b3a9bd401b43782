// Package storage holds portalgate's state behind one small interface:
// contacts, sign-in flows, codes, sessions, rate-limit counters, single-use
// tokens, the mail outbox, the audit trail and the instance secret.
//
// Every operation that must be atomic (consume a code once, count a try,
// claim an outbox message, start a cooldown) is a single call, so callers
// never read and then write. Backends are Caddy guest modules in the
// portal.storage namespace; the package knows nothing of HTTP.
//
// # Roles
//
// Store is the whole of it, made of role interfaces named for what they
// keep: Secrets, Contacts, Groups, Flows, Codes, Sessions, Limits, Once,
// Outbox, AuditTrail and Links. The records (Contact, Group, SignInFlow,
// Code, Session, OutboxMessage, AuditEvent, PortalLink) are the contract
// between backends: each
// backend keeps every field, and the conformance suite in storagetest
// holds every backend to the same behaviour. Contacts are parsed and
// validated here too (ParseContactsJSON, ParseContactsCSV,
// ValidateContacts), so the contacts file, the admin API and the CLI
// accept the same records with the same errors; NormalizeEmail is the one
// form of an address every comparison uses (contacts, the sign-in form,
// SSO claims).
//
// # Contact lifecycle
//
// A contact written as disabled, deleted, or whose email changes loses
// every session and code in the same store call (a Badger transaction, a
// Redis script); sessions are deleted, so re-enabling revives none.
// Contact.Origin records which import owns a contact: OriginFile ("file")
// for those a workspace's contacts_file brought in, empty for the admin
// API's. It is not the product field Source (manual or directory).
// ReplaceContacts makes a batch the whole of a ContactSet: an origin's
// (contacts_file) or a source's (a scripted directory sync); those of the
// set it no longer holds are disabled and signed out, in the same call;
// other contacts are left alone.
//
// Hot records (sessions and contacts, read on every signed-in request) are
// served by each backend from a HotCache, dropped whenever they change.
// Audit events and outbox messages are named by a SortableID, which sorts
// by time.
//
// # Key layout
//
// Both backends store records as JSON (except where noted), keep
// short-lived state with a database TTL and also keep the expiry inside the
// value, checked against the store's clock, so an entry the database has
// not yet expired is still refused. Workspace names are ValidNames, so they
// never hold a separator.
//
// Badger (package badgerstore), one key space:
//
//	secret                          instance secret (raw bytes)
//	c/<ws>/<id>                     contact
//	ce/<ws>/<email>                 email index -> contact id
//	cd/<ws>/<directory id>          directory index -> contact id
//	g/<ws>/<id>                     directory group
//	f/<id hash>                     sign-in flow
//	k/<ws>/<contact id>/<flow hash> code of one sign-in flow
//	s/<id hash>                     session
//	si/<ws>/<contact id>/<id hash>  session index (empty value), for listing and revoking
//	r/<key>/<window start>          rate-limit counter (8 bytes, big-endian)
//	w/<key>                         cooldown end (8 bytes, Unix nanoseconds)
//	o/<key>                         single-use value
//	q/<id>                          outbox message
//	a/<ws>/<id>                     audit event; the id sorts by time, so a reverse scan is newest first
//	m/<name>                        facts about the database itself (migrations done)
//	m/import/<ws>[/<seq>]           journal of an import larger than one transaction (see import.go)
//	l/<ws>/<id>                     personalized link (TTL: its expiry)
//	li/<ws>/<contact id>/<id>       link index (empty value, same TTL), for listing and revoking
//
// Redis (package redisstore), every key after a configurable prefix
// ("portalgate:"). Keys one script touches together share a hash tag
// ({ws:W}, {outbox}), so the layout works on a Cluster; the full list, with
// the fields of the hashes, is in redisstore's package documentation:
//
//	secret                     instance secret (raw bytes)
//	{ws:W}:c:<id>              contact
//	{ws:W}:ids                 set of contact ids
//	{ws:W}:ce:<email>          email index -> contact id
//	{ws:W}:cd:<directory id>   directory index -> contact id
//	{ws:W}:imp:lock            a large import's lock (the importer's token, a lease)
//	{ws:W}:imp:plan            a large import's planned records, a list of chunks
//	{ws:W}:imp:mark            a large import's commit mark
//	{ws:W}:code:<contact id>:<flow hash>  code of one sign-in flow (a hash, not JSON)
//	{ws:W}:codes:<contact id>  set of flow hashes holding a code of the contact
//	{ws:W}:g:<id>              directory group
//	{ws:W}:gids                set of group ids
//	{ws:W}:sessions            session id hashes, scored by absolute expiry
//	{ws:W}:si:<contact id>     the same, per contact
//	{ws:W}:sess:<id hash>      session, in its workspace's slot so that one
//	                           script changes a contact and ends its sessions
//	flow:<id hash>             sign-in flow
//	once:<key>                 single-use value
//	hit:<key>:<window start>   rate-limit counter
//	cool:<key>                 cooldown end (Unix microseconds)
//	{outbox}:due               outbox message ids, scored by when claimable
//	{outbox}:m:<id>            outbox message (a hash: JSON plus the fields that change)
//	audit:W                    audit events (id + JSON), scored by time
//	{ws:W}:l:<id>              personalized link (a hash: JSON plus opens and last open)
//	{ws:W}:links               link ids of the workspace, scored by expiry
//	{ws:W}:li:<contact id>     the same, per contact
package storage
