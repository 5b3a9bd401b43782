package badgerstore

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/kdesk/portalgate/storage"
)

// UnmarshalCaddyfile sets up the backend from the portal option's storage
// block. Syntax:
//
//	storage badger {
//		dir <dir>
//		audit_retention <duration>
//		compression none|snappy|zstd
//	}
//
// The portal option's `storage_dir <dir>` is short for the dir alone.
func (b *Backend) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // "badger"
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if seen[opt] {
			return d.Errf("storage badger: %s is set twice", opt)
		}
		seen[opt] = true
		switch opt {
		case "dir":
			if !d.AllArgs(&b.Dir) {
				return d.ArgErr()
			}
		case "audit_retention":
			v, err := storage.DurationArg(d)
			if err != nil {
				return err
			}
			b.AuditRetention = v
		case "compression":
			if !d.AllArgs(&b.Compression) {
				return d.ArgErr()
			}
			if _, err := compression(b.Compression); err != nil {
				return d.Err(err.Error())
			}
		default:
			return storage.UnknownOption(d, "storage badger", []string{"dir", "audit_retention", "compression"})
		}
	}
	return nil
}

// Interface guards
var _ caddyfile.Unmarshaler = (*Backend)(nil)
