package redisstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/kdesk/portalgate/storage"
	"github.com/kdesk/portalgate/storage/redisstore"
)

func caddyContext(t *testing.T) caddy.Context {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	return ctx
}

func provision(t *testing.T, config string) (*redisstore.Backend, error) {
	t.Helper()
	var b redisstore.Backend
	if err := json.Unmarshal([]byte(config), &b); err != nil {
		t.Fatal(err)
	}
	if err := b.Provision(caddyContext(t)); err != nil {
		return &b, err
	}
	return &b, b.Validate()
}

func TestModuleRegistered(t *testing.T) {
	info, err := caddy.GetModule("portal.storage.redis")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := info.New().(storage.Backend); !ok {
		t.Fatalf("%T is not a storage.Backend", info.New())
	}
}

func TestProvisionDefaults(t *testing.T) {
	b, err := provision(t, `{}`)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(b.Address, []string{"127.0.0.1:6379"}) || b.KeyPrefix != "portalgate:" ||
		time.Duration(b.DialTimeout) != 5*time.Second || time.Duration(b.AuditRetention) != 90*24*time.Hour || b.TLS {
		t.Fatalf("defaults: %+v", b)
	}
}

func TestProvisionResolvesPlaceholders(t *testing.T) {
	t.Setenv("PORTALGATE_TEST_REDIS_PASSWORD", "s3cret")
	t.Setenv("PORTALGATE_TEST_REDIS_ADDRS", "127.0.0.2:7000, 127.0.0.3")
	b, err := provision(t, `{
		"address": ["{env.PORTALGATE_TEST_REDIS_ADDRS}", "redis.internal"],
		"username": "portal",
		"password": "{env.PORTALGATE_TEST_REDIS_PASSWORD}",
		"key_prefix": "acme:",
		"dial_timeout": "2s"
	}`)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"127.0.0.2:7000", "127.0.0.3:6379", "redis.internal:6379"}; !slices.Equal(b.Address, want) {
		t.Errorf("Address = %q, want %q", b.Address, want)
	}
	if b.Password != "s3cret" || b.Username != "portal" || b.KeyPrefix != "acme:" || time.Duration(b.DialTimeout) != 2*time.Second {
		t.Errorf("resolved config: %+v", b)
	}

	b, err = provision(t, `{"address": ["sentinel-1", "sentinel-2:5000"], "master_name": "mymaster", "db": 2}`)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"sentinel-1:26379", "sentinel-2:5000"}; !slices.Equal(b.Address, want) {
		t.Errorf("sentinel Address = %q, want %q", b.Address, want)
	}
}

func TestProvisionTLS(t *testing.T) {
	if _, err := provision(t, `{"tls_ca_file": "/nonexistent/ca.pem"}`); err == nil || !strings.Contains(err.Error(), "tls_ca_file") {
		t.Fatalf("missing CA file: err = %v", err)
	}
	notPEM := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := provision(t, `{"tls_ca_file": "`+notPEM+`"}`); err == nil || !strings.Contains(err.Error(), "no PEM certificates") {
		t.Fatalf("CA file without certificates: err = %v", err)
	}
	b, err := provision(t, `{"tls": true}`)
	if err != nil || !b.TLS {
		t.Fatalf("tls: %+v, %v", b, err)
	}
}

func TestValidate(t *testing.T) {
	for config, want := range map[string]string{
		`{"key_prefix": "app{1}:"}`:                  "must not contain { or }",
		`{"address": ["a:6379", "b:6379"], "db": 1}`: "only database 0",
		`{"db": -1}`:                       "must not be negative",
		`{"address": ["a:6379"], "db": 3}`: "",
		`{"address": ["a", "b"], "master_name": "m", "db": 3}`: "",
	} {
		_, err := provision(t, config)
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("%s: err = %v, want %q", config, err, want)
		}
	}
}

// TestProvisionDoesNotConnect provisions against a listener that counts
// connections: `caddy validate` must work without touching Redis.
func TestProvisionDoesNotConnect(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var accepted atomic.Int32
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	if _, err := provision(t, `{"address": ["`+l.Addr().String()+`"]}`); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if n := accepted.Load(); n != 0 {
		t.Fatalf("Provision made %d connections, want none", n)
	}
}

// TestOpenSharesStoreAcrossReloads opens the same settings from two
// configs, as a reload does: both get one store, and it closes only when
// the last config lets go.
func TestOpenSharesStoreAcrossReloads(t *testing.T) {
	srv := startRedis(t, false)
	config := `{"address": ["` + srv.addr() + `"], "key_prefix": "` + uniquePrefix() + `"}`
	old, err := provision(t, config)
	if err != nil {
		t.Fatal(err)
	}
	s1, err := old.Open()
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := s1.PutOnce(ctx, "k", []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}

	next, err := provision(t, config)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := next.Open()
	if err != nil {
		t.Fatal(err)
	}
	if s1 != s2 {
		t.Fatal("a reload with the same settings got a second store")
	}
	if err := old.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if v, err := s2.TakeOnce(ctx, "k"); err != nil || string(v) != "v" {
		t.Fatalf("TakeOnce after the old config's cleanup = %q, %v", v, err)
	}
	if err := next.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if _, err := s2.TakeOnce(ctx, "k"); !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("TakeOnce after the last cleanup: err = %v, want the store closed", err)
	}
}

// TestOpenWithoutRedis opens the module with Redis down: Caddy's start
// must not fail.
func TestOpenWithoutRedis(t *testing.T) {
	b, err := provision(t, `{"address": ["127.0.0.1:1"], "dial_timeout": "1s"}`)
	if err != nil {
		t.Fatal(err)
	}
	s, err := b.Open()
	if err != nil {
		t.Fatalf("Open with Redis down: %v", err)
	}
	t.Cleanup(func() { _ = b.Cleanup() })
	if _, err := s.Flow(t.Context(), "f"); !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("Flow with Redis down: err = %v, want storage.ErrUnavailable", err)
	}
}
