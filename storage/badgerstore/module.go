package badgerstore

import (
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"

	"github.com/kdesk/portalgate/storage"
)

func init() {
	caddy.RegisterModule(new(Backend))
}

// pool shares one open database per directory across config reloads: Caddy
// provisions and starts a new config before it cleans up the old one, and
// Badger holds a directory lock.
var pool = caddy.NewUsagePool()

// Backend is the portal.storage.badger module: state in an embedded Badger
// database on local disk. It is the default backend.
type Backend struct {
	// Dir is the database directory. Default: Caddy's data directory
	// joined with "portalgate".
	Dir string `json:"dir,omitempty"`

	// AuditRetention is how long audit events are kept. Default: 90 days.
	AuditRetention caddy.Duration `json:"audit_retention,omitempty"`

	logger *zap.Logger

	mu       sync.Mutex
	acquired string // pool key this instance holds, released in Cleanup
	store    *Store
}

// CaddyModule returns the Caddy module information.
func (*Backend) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "portal.storage.badger",
		New: func() caddy.Module { return new(Backend) },
	}
}

// Provision resolves the directory. It does not open the database, so
// `caddy validate` works while a running server holds the lock.
func (b *Backend) Provision(ctx caddy.Context) error {
	b.logger = ctx.Logger()
	repl := caddy.NewReplacer()
	b.Dir = repl.ReplaceKnown(b.Dir, "")
	if b.Dir == "" {
		b.Dir = filepath.Join(caddy.AppDataDir(), "portalgate")
	}
	abs, err := filepath.Abs(b.Dir)
	if err != nil {
		return fmt.Errorf("storage dir %q: %w", b.Dir, err)
	}
	b.Dir = filepath.Clean(abs)
	return nil
}

// Open implements storage.Backend: it opens the database, or shares the one
// the running config already has open.
func (b *Backend) Open() (storage.Store, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.store != nil {
		return b.store, nil
	}
	v, _, err := pool.LoadOrNew(b.Dir, func() (caddy.Destructor, error) {
		s, err := Open(b.Dir, Options{Logger: b.logger, AuditRetention: time.Duration(b.AuditRetention)})
		if err != nil {
			return nil, err
		}
		b.logger.Info("opened storage", zap.String("dir", b.Dir))
		return pooled{s}, nil
	})
	if err != nil {
		return nil, err
	}
	b.acquired = b.Dir
	b.store = v.(pooled).Store
	return b.store, nil
}

// Cleanup releases this config's hold on the database; the last release
// closes it.
func (b *Backend) Cleanup() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.acquired == "" {
		return nil
	}
	_, err := pool.Delete(b.acquired)
	b.acquired, b.store = "", nil
	return err
}

type pooled struct{ *Store }

func (p pooled) Destruct() error { return p.Close() }

// Interface guards
var (
	_ caddy.Provisioner  = (*Backend)(nil)
	_ caddy.CleanerUpper = (*Backend)(nil)
	_ storage.Backend    = (*Backend)(nil)
)
