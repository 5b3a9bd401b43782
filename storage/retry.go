package storage

import (
	"context"
	"errors"
	"time"
)

// Retry calls fn now and then every interval while it fails with
// ErrUnavailable (storage that cannot be reached yet), until it succeeds,
// fails otherwise, or ctx ends. It returns fn's last error, or ctx's.
// Every background retry of portalgate goes through it, under the context
// of the config that started it.
func Retry(ctx context.Context, interval time.Duration, fn func() error) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		err := fn()
		if err == nil || !errors.Is(err, ErrUnavailable) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
