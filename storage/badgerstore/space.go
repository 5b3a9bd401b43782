package badgerstore

import (
	"fmt"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/kdesk/portalgate/storage"
)

// Badger writes its memtable log through a memory-mapped file that it
// sizes without reserving the blocks: on a full disk (a full tmpfs above
// all) the write faults and the process dies of SIGBUS, taking Caddy with
// it. So every write first checks that the disk has room for a few
// memtables; when it has not, the write fails with storage.ErrUnavailable
// (the gate answers "temporarily unavailable", signed-in contacts keep
// being read) and works again by itself once space is freed.

// reserveBytes is the free space a write needs: several memtables and
// tables, with room for Badger's own flushes and compactions.
const reserveBytes = 16 << 20

// spaceCheckEvery bounds how often the disk is asked, under load.
const spaceCheckEvery = 100 * time.Millisecond

// space remembers the latest answer.
type space struct {
	dir     string
	checked atomic.Int64 // unix nanoseconds of the last statfs
	free    atomic.Int64
}

// room returns nil when the disk has room for a write, and otherwise an
// error wrapping storage.ErrUnavailable.
func (sp *space) room() error {
	now := time.Now().UnixNano()
	if now-sp.checked.Load() > int64(spaceCheckEvery) {
		var st syscall.Statfs_t
		if err := syscall.Statfs(sp.dir, &st); err == nil {
			sp.free.Store(int64(st.Bavail) * int64(st.Bsize))
		}
		sp.checked.Store(now)
	}
	if free := sp.free.Load(); free < reserveBytes {
		return fmt.Errorf("badger: %w: the disk of %s has %d bytes free, less than the %d a write keeps in reserve", storage.ErrUnavailable, sp.dir, free, reserveBytes)
	}
	return nil
}
