package badgerstore

import (
	"context"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"

	"github.com/kdesk/portalgate/storage"
)

// TestReloadTakesNewRetention: the database is shared across config
// reloads, and the newer config's audit_retention is the one that counts.
func TestReloadTakesNewRetention(t *testing.T) {
	dir := t.TempDir()
	old := &Backend{Dir: dir, AuditRetention: caddy.Duration(time.Hour), logger: zap.NewNop()}
	st, err := old.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer old.Cleanup()
	renewed := &Backend{Dir: dir, AuditRetention: caddy.Duration(48 * time.Hour), logger: zap.NewNop()}
	st2, err := renewed.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer renewed.Cleanup()
	if st != st2 {
		t.Fatal("a reload opened a second database instead of sharing the first")
	}
	// An event 2 hours old is past the old retention, within the new one.
	s := st2.(*Store)
	e := storage.AuditEvent{Workspace: "acme", Event: "code_sent", Time: time.Now().Add(-2 * time.Hour)}
	if err := s.AppendAudit(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	evs, _, err := s.Audit(context.Background(), storage.AuditQuery{Workspace: "acme", Limit: 10})
	if err != nil || len(evs) != 1 {
		t.Fatalf("events kept under the new retention: %d, %v", len(evs), err)
	}
}
