package redisstore

import (
	"strconv"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/kdesk/portalgate/storage"
)

// redisOptions are the subdirectives of the storage redis block.
var redisOptions = []string{
	"address", "username", "password", "db", "key_prefix", "tls",
	"tls_ca_file", "master_name", "dial_timeout", "call_timeout", "audit_retention",
	"cache_records",
}

// UnmarshalCaddyfile sets up the backend from the portal option's storage
// block. Syntax:
//
//	storage redis {
//		address <host:port>...
//		username <user>
//		password <password>
//		db <n>
//		key_prefix <prefix>
//		tls
//		tls_ca_file <file>
//		master_name <sentinel master>
//		dial_timeout <duration>
//		call_timeout <duration>
//		audit_retention <duration>
//		cache_records <n>
//	}
//
// address is required here: a Caddyfile that names Redis says where it is.
func (b *Backend) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // "redis"
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if seen[opt] {
			return d.Errf("storage redis: %s is set twice", opt)
		}
		seen[opt] = true
		var ok bool
		switch opt {
		case "address":
			b.Address = d.RemainingArgs()
			ok = len(b.Address) > 0
		case "username":
			ok = d.AllArgs(&b.Username)
		case "password":
			ok = d.AllArgs(&b.Password)
		case "db":
			var s string
			if ok = d.AllArgs(&s); ok {
				n, err := strconv.Atoi(s)
				if err != nil {
					return d.Errf("db %q: want a whole number", s)
				}
				b.DB = n
			}
		case "key_prefix":
			ok = d.AllArgs(&b.KeyPrefix)
		case "cache_records":
			var s string
			if ok = d.AllArgs(&s); ok {
				n, err := strconv.Atoi(s)
				if err != nil || n < 1 {
					return d.Errf("cache_records %q: want a whole number of at least 1", s)
				}
				b.CacheRecords = n
			}
		case "tls":
			ok = !d.NextArg()
			b.TLS = true
		case "tls_ca_file":
			ok = d.AllArgs(&b.TLSCAFile)
		case "master_name":
			ok = d.AllArgs(&b.MasterName)
		case "dial_timeout", "call_timeout", "audit_retention":
			v, err := storage.DurationArg(d)
			if err != nil {
				return err
			}
			switch opt {
			case "dial_timeout":
				b.DialTimeout = v
			case "call_timeout":
				b.CallTimeout = v
			default:
				b.AuditRetention = v
			}
			ok = true
		default:
			return storage.UnknownOption(d, "storage redis", redisOptions)
		}
		if !ok {
			return d.ArgErr()
		}
	}
	if len(b.Address) == 0 {
		return d.Err("storage redis: address is required")
	}
	return nil
}

// Interface guards
var _ caddyfile.Unmarshaler = (*Backend)(nil)
