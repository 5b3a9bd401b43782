package handlers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"github.com/kdesk/portalgate/scim"
	"github.com/kdesk/portalgate/storage"
)

// Admin audit event names: what an operator (or the config) did, each
// recorded with its actor.
const (
	EventLinkCreated      = "link_created"
	EventLinkRevoked      = "link_revoked"
	EventContactsImported = "contacts_imported"
	EventContactChanged   = "contact_changed"
	EventContactDeleted   = "contact_deleted"
	EventSessionsRevoked  = "sessions_revoked"
	EventConfigLoaded     = "config_loaded"
)

// Actors of events no admin caller causes.
const (
	// ActorFile is the actor of a contacts_file import.
	ActorFile = "file"
	// ActorConfig is the actor of config_loaded.
	ActorConfig = "config"
)

// AuditEventNames lists every event the audit trail can hold, sorted.
var AuditEventNames = func() []string {
	names := []string{
		EventCodeRequested, EventCodeSent, EventCodeNotSent, EventMailFailed, EventCodeAccepted,
		EventCodeRejected, EventRateLimited, EventLinkOpened, EventLinkInvalid, EventSSOSuccess,
		EventSSOFailure, EventSessionEnded, EventSessionRevoked, EventPortalUnavailable,
		EventLinkCreated, EventLinkRevoked, EventContactsImported, EventContactChanged,
		EventContactDeleted, EventSessionsRevoked, EventConfigLoaded,
		scim.EventProvisioned, scim.EventDeprovisioned, EventSCIMUnauthorized, EventWebhookFailed,
	}
	slices.Sort(names)
	return names
}()

// CheckEventName returns nil for a known audit event name, and otherwise an
// *InputError naming the nearest known one when there is a likely match:
// "unknown event sso_fail, did you mean sso_failure?".
func CheckEventName(name string) error {
	if slices.Contains(AuditEventNames, name) {
		return nil
	}
	s := storage.Suggest(name, AuditEventNames)
	if s == "" && len(name) >= 3 {
		// A name cut short (sso_fail): the one event it begins.
		var starts []string
		for _, n := range AuditEventNames {
			if strings.HasPrefix(n, name) {
				starts = append(starts, n)
			}
		}
		if len(starts) == 1 {
			s = starts[0]
		}
	}
	if s != "" {
		return &InputError{fmt.Sprintf("unknown event %s, did you mean %s?", name, s)}
	}
	return &InputError{fmt.Sprintf("unknown event %s (known: %s)", name, strings.Join(AuditEventNames, ", "))}
}

// SecretID is a short, public name of an instance secret: the first 8 hex
// digits of SHA-256 of a sub-key derived for that purpose alone, so two
// instances can be seen to share a secret without anything of it being
// revealed.
func SecretID(secret []byte) string {
	sum := sha256.Sum256(derive(secret, "id", ""))
	return hex.EncodeToString(sum[:4])
}

// configLoaded records, in every workspace's trail, that a config started
// serving: which workspaces it has and which secret it signs with.
func (p *Portal) configLoaded(rt *runtime, secret []byte) {
	names := make([]string, 0, len(p.Workspaces))
	for name := range p.Workspaces {
		names = append(names, name)
	}
	slices.Sort(names)
	reason := "workspaces " + strings.Join(names, ", ") + "; secret id " + SecretID(secret)
	for _, name := range names {
		p.audit(context.Background(), rt, storage.AuditEvent{Workspace: name, Event: EventConfigLoaded, Actor: ActorConfig, Reason: reason})
	}
}
