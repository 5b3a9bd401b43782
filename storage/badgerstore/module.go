package badgerstore

import (
	"fmt"
	"path/filepath"
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

	// Compression is how tables written from now on are compressed:
	// "zstd" (the default: a quarter of the store and of the resident
	// memory of "none" with a large customer base; a read outside
	// Badger's 16 MB block cache decompresses a block), "snappy", or
	// "none" (the fastest reads of records outside the caches, for a
	// machine with memory to spare: Badger maps the tables into Caddy). It
	// is read when the database is opened; tables already written keep
	// theirs until compaction rewrites them.
	Compression string `json:"compression,omitempty"`

	logger *zap.Logger
	shared storage.Shared
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
	if _, err := compression(b.Compression); err != nil {
		return err
	}
	return nil
}

// Open implements storage.Backend: it opens the database, or shares the one
// the running config already has open.
func (b *Backend) Open() (storage.Store, error) {
	st, err := b.shared.Open(pool, b.Dir, func() (storage.Closer, error) {
		s, err := Open(b.Dir, Options{Logger: b.logger, AuditRetention: time.Duration(b.AuditRetention), Compression: b.Compression})
		if err != nil {
			return nil, err
		}
		b.logger.Info("opened storage", zap.String("dir", b.Dir))
		return s, nil
	})
	if s, ok := st.(*Store); ok && err == nil {
		// Shared with the previous config: this one's audit retention and
		// logger take effect.
		s.Reconfigure(time.Duration(b.AuditRetention), b.logger)
	}
	return st, err
}

// Cleanup releases this config's hold on the database; the last release
// closes it.
func (b *Backend) Cleanup() error { return b.shared.Release(pool) }

// Interface guards
var (
	_ caddy.Provisioner  = (*Backend)(nil)
	_ caddy.CleanerUpper = (*Backend)(nil)
	_ storage.Backend    = (*Backend)(nil)
)
