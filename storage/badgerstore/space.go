package badgerstore

import (
	"fmt"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"

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
const reserveBytes = 32 << 20

// While the disk has more than plentyBytes free, a reading of its free
// space stays good for plentyFor: it takes another process writing
// hundreds of megabytes a second to fill the reserve in between, and a
// statfs before every write cost about 4% of Caddy's CPU in the sign-in
// rush (7 µs each, some 14 writes a sign-in). Below it, every write
// asks again.
const (
	plentyBytes = 256 << 20
	plentyFor   = time.Second
)

// space remembers the latest answer.
type space struct {
	dir  string
	free atomic.Int64
	// read is when free was read (Unix nanoseconds).
	read atomic.Int64
	// short is set while the disk lacks the reserve, so that the store
	// logs the outage once and its end once.
	short atomic.Bool
	log   func() *zap.Logger
}

// room returns nil when the disk has room for a write, and otherwise an
// error wrapping storage.ErrUnavailable.
func (sp *space) room() error {
	// Asked before every write unless the disk has plenty (see
	// plentyBytes): a disk filled by another process in between would
	// still fault, but the reserve leaves room for what Badger writes
	// next.
	now := time.Now().UnixNano()
	if sp.free.Load() <= plentyBytes || now-sp.read.Load() >= int64(plentyFor) {
		var st syscall.Statfs_t
		if err := syscall.Statfs(sp.dir, &st); err == nil {
			sp.free.Store(int64(st.Bavail) * int64(st.Bsize))
			sp.read.Store(now)
		}
	}
	if free := sp.free.Load(); free < reserveBytes {
		err := fmt.Errorf("badger: %w: the disk of %s has %d bytes free, less than the %d a write keeps in reserve", storage.ErrUnavailable, sp.dir, free, reserveBytes)
		if sp.short.CompareAndSwap(false, true) {
			sp.log().Error("portal storage unavailable: the disk is full; writes fail closed until space is freed", zap.Error(err))
		}
		return err
	}
	if sp.short.CompareAndSwap(true, false) {
		sp.log().Info("portal storage available again: the disk has room", zap.String("dir", sp.dir))
	}
	return nil
}
