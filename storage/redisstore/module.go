package redisstore

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"

	"github.com/kdesk/portalgate/storage"
)

func init() {
	caddy.RegisterModule(new(Backend))
}

// pool shares one client per set of connection settings across config
// reloads: Caddy provisions and starts a new config before it cleans up
// the old one, and the client-side cache and connections should survive.
var pool = caddy.NewUsagePool()

// Backend is the portal.storage.redis module: state in Redis, shared by
// several Caddy instances.
type Backend struct {
	// Address lists the Redis servers as host:port: one for a single
	// server, several for a Cluster, or the sentinels when master_name is
	// set. A missing port means 6379 (26379 for sentinels); an entry may
	// hold several addresses separated by commas, as an {env.…}
	// placeholder might. Default: ["127.0.0.1:6379"].
	Address []string `json:"address,omitempty"`

	// Username authenticates with a Redis ACL user. Default: none (the
	// default user).
	Username string `json:"username,omitempty"`

	// Password authenticates to Redis, such as {env.REDIS_PASSWORD}.
	// Default: none.
	Password string `json:"password,omitempty"`

	// DB is the database number of a single server or Sentinel master;
	// Cluster has only 0. Default: 0.
	DB int `json:"db,omitempty"`

	// KeyPrefix starts every key the store writes, so one Redis can serve
	// several deployments. It must not contain { or }. Default:
	// "portalgate:".
	KeyPrefix string `json:"key_prefix,omitempty"`

	// TLS connects with TLS, verifying the server against the system's
	// roots or TLSCAFile. Default: false (plain TCP).
	TLS bool `json:"tls,omitempty"`

	// TLSCAFile is a PEM file of the CA certificates that sign the
	// server's certificate; setting it turns TLS on. Default: none (the
	// system's roots).
	TLSCAFile string `json:"tls_ca_file,omitempty"`

	// MasterName is the name of the master the sentinels in Address
	// monitor; setting it turns on Sentinel mode. The sentinels are
	// reached without credentials. Default: none.
	MasterName string `json:"master_name,omitempty"`

	// DialTimeout bounds each connection attempt. Default: 5s.
	DialTimeout caddy.Duration `json:"dial_timeout,omitempty"`
	// CallTimeout bounds each call to Redis: a frozen or overloaded server
	// fails requests closed ("temporarily unavailable") after it instead of
	// holding them. Default: 2s.
	CallTimeout caddy.Duration `json:"call_timeout,omitempty"`

	// AuditRetention is how long audit events are kept. Default: 90 days.
	AuditRetention caddy.Duration `json:"audit_retention,omitempty"`

	// CacheRecords bounds each of the instance's caches of decoded
	// sessions and contacts, read on every signed-in request; a record
	// not in them costs a round trip to Redis. Each record takes about 1
	// KB of memory (the two caches of a 100,000-contact workspace with a
	// session each: about 240 MB). Default: 131072.
	CacheRecords int `json:"cache_records,omitempty"`

	logger *zap.Logger
	tls    *tls.Config
	caSum  string
	shared storage.Shared
}

// CaddyModule returns the Caddy module information.
func (*Backend) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "portal.storage.redis",
		New: func() caddy.Module { return new(Backend) },
	}
}

// Provision resolves placeholders, fills defaults and reads the CA file. It
// does not connect, so `caddy validate` works without Redis.
func (b *Backend) Provision(ctx caddy.Context) error {
	b.logger = ctx.Logger()
	repl := caddy.NewReplacer()
	defPort := "6379"
	b.MasterName = repl.ReplaceKnown(b.MasterName, "")
	if b.MasterName != "" {
		defPort = "26379"
	}
	var addrs []string
	for _, a := range b.Address {
		for _, a := range strings.Split(repl.ReplaceKnown(a, ""), ",") {
			if a = strings.TrimSpace(a); a == "" {
				continue
			}
			if _, _, err := net.SplitHostPort(a); err != nil {
				a = net.JoinHostPort(strings.Trim(a, "[]"), defPort)
			}
			addrs = append(addrs, a)
		}
	}
	if len(addrs) == 0 {
		addrs = []string{"127.0.0.1:6379"}
	}
	b.Address = addrs
	b.Username = repl.ReplaceKnown(b.Username, "")
	b.Password = repl.ReplaceKnown(b.Password, "")
	b.KeyPrefix = repl.ReplaceKnown(b.KeyPrefix, "")
	if b.KeyPrefix == "" {
		b.KeyPrefix = "portalgate:"
	}
	if b.DialTimeout <= 0 {
		b.DialTimeout = caddy.Duration(5 * time.Second)
	}
	if b.CallTimeout <= 0 {
		b.CallTimeout = caddy.Duration(2 * time.Second)
	}
	if b.AuditRetention <= 0 {
		b.AuditRetention = caddy.Duration(90 * 24 * time.Hour)
	}
	b.TLSCAFile = repl.ReplaceKnown(b.TLSCAFile, "")
	if b.TLSCAFile != "" {
		b.TLS = true
	}
	if b.TLS {
		b.tls = &tls.Config{MinVersion: tls.VersionTLS12}
		if b.TLSCAFile != "" {
			pem, err := os.ReadFile(b.TLSCAFile)
			if err != nil {
				return fmt.Errorf("tls_ca_file: %w", err)
			}
			roots := x509.NewCertPool()
			if !roots.AppendCertsFromPEM(pem) {
				return fmt.Errorf("tls_ca_file %s: no PEM certificates in it", b.TLSCAFile)
			}
			b.tls.RootCAs = roots
			sum := sha256.Sum256(pem)
			b.caSum = hex.EncodeToString(sum[:])
		}
	}
	return nil
}

// Validate checks the configuration without connecting.
func (b *Backend) Validate() error {
	if strings.ContainsAny(b.KeyPrefix, "{}") {
		return fmt.Errorf("key_prefix %q: must not contain { or } (the store uses Redis hash tags)", b.KeyPrefix)
	}
	if b.DB < 0 {
		return fmt.Errorf("db %d: must not be negative", b.DB)
	}
	if b.CacheRecords < 0 {
		return fmt.Errorf("cache_records %d: must be at least 1", b.CacheRecords)
	}
	if b.DB != 0 && b.MasterName == "" && len(b.Address) > 1 {
		return errors.New("db: a Redis Cluster (several addresses) has only database 0")
	}
	return nil
}

// poolKey identifies a store by everything that shapes it; the password
// only as a hash.
func (b *Backend) poolKey() string {
	pw := sha256.Sum256([]byte(b.Password))
	k, _ := json.Marshal([]any{
		b.Address, b.Username, hex.EncodeToString(pw[:]), b.DB, b.KeyPrefix, b.TLS, b.caSum,
		b.MasterName, b.DialTimeout, b.CallTimeout, b.AuditRetention, b.CacheRecords,
	})
	return string(k)
}

// Open implements storage.Backend: it connects, or shares the store the
// running config already has. An unreachable Redis does not fail it: the
// store's calls fail with storage.ErrUnavailable until Redis answers.
func (b *Backend) Open() (storage.Store, error) {
	return b.shared.Open(pool, b.poolKey(), func() (storage.Closer, error) {
		s, err := Open(Options{
			Address:        b.Address,
			Username:       b.Username,
			Password:       b.Password,
			DB:             b.DB,
			KeyPrefix:      b.KeyPrefix,
			TLS:            b.tls,
			MasterName:     b.MasterName,
			DialTimeout:    time.Duration(b.DialTimeout),
			CallTimeout:    time.Duration(b.CallTimeout),
			AuditRetention: time.Duration(b.AuditRetention),
			CacheRecords:   b.CacheRecords,
			Logger:         b.logger,
		})
		if err != nil {
			return nil, err
		}
		b.logger.Info("opened storage", zap.Strings("address", b.Address), zap.String("key_prefix", b.KeyPrefix))
		return s, nil
	})
}

// Cleanup releases this config's hold on the store; the last release
// closes it.
func (b *Backend) Cleanup() error { return b.shared.Release(pool) }

// Interface guards
var (
	_ caddy.Provisioner  = (*Backend)(nil)
	_ caddy.Validator    = (*Backend)(nil)
	_ caddy.CleanerUpper = (*Backend)(nil)
	_ storage.Backend    = (*Backend)(nil)
)
