package redisstore

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/rueidis"
	"go.uber.org/zap"

	"github.com/kdesk/portalgate/storage"
)

// Imports larger than one script. A script is atomic, and Redis serves
// nothing else while one runs: a 100,000-contact import in one script
// held every instance's sign-ins for seconds. A write of more than
// importChunk contacts (or a replace over a workspace that holds more)
// therefore goes in steps, under a lock every contact script respects:
//
//	imp:lock   the importer's random token, a lease renewed at each step
//	imp:plan   the planned records, a list of chunks (JSON)
//	imp:mark   the commit mark, written with the last staged chunk
//
// The importer takes the lock, reads the stored contacts, plans the final
// records and checks them for email conflicts (so a refused import
// changes nothing), stages the chunks, then applies them one script each
// (each also drops its chunk), and ends with the lock. Meanwhile the
// one-step contact scripts write nothing and their callers wait. An
// importer that dies leaves the lock to expire: before the mark, the next
// importer drops the staged chunks; after it, the next contact write (on
// any instance) finishes the import first. Readers may see a large import
// half applied while it runs; its outcome is all or nothing.

// importChunk is how many contacts one step writes: about 15 ms of Redis
// time, so other calls wait at most that long.
const importChunk = 500

// importLease is how long an importer's lock lives without a step.
const importLease = 30 * time.Second

// importWait bounds how long a contact write waits for an import.
const importWait = 2 * time.Minute

// stageBytes bounds one staging call.
const stageBytes = 1 << 20

var (
	//go:embed scripts/import_guard.lua
	importGuardLua string
	//go:embed scripts/import_stage.lua
	importStageLua string
	//go:embed scripts/import_step.lua
	importStepLua string
	//go:embed scripts/import_end.lua
	importEndLua string

	importStage = newScript(importStageLua)
	importStep  = newScript(endContactLua + importStepLua)
	importEnd   = newScript(importEndLua)
)

// errImporting is a one-step script's answer while an import holds the
// workspace's contacts.
var errImporting = errors.New("redis: an import of contacts is running")

// errPlanDropped is a committed plan that stopped part way and was
// dropped (logged where it happened).
var errPlanDropped = errors.New("redis: a large import of contacts stopped part way")

// importKeys are the lock, plan and mark keys of ws.
func (s *Store) importKeys(ws string) []string {
	pre := s.ws(ws)
	return []string{pre + "imp:lock", pre + "imp:plan", pre + "imp:mark"}
}

// large reports whether writing n contacts to ws (with replace, over all
// of them) takes an import in steps.
func (s *Store) large(ctx context.Context, ws string, n int, replace bool) (bool, error) {
	if n > importChunk {
		return true, nil
	}
	if !replace {
		return false, nil
	}
	r, err := s.do(ctx, func(b rueidis.Builder) rueidis.Completed { return b.Scard().Key(s.ws(ws) + "ids").Build() })
	if err != nil {
		return false, err
	}
	stored, err := r.AsInt64()
	return stored+int64(n) > importChunk, err
}

// waitImport waits for the import that made a one-step script answer
// errImporting: while its lock lives, it polls; a committed plan whose
// importer died is finished here. It returns when the caller may try
// again. since is when the caller began waiting, in real time (time.Now,
// not the store's clock): the wait is for another process.
func (s *Store) waitImport(ctx context.Context, ws string, since time.Time) error {
	if time.Since(since) > importWait {
		return fmt.Errorf("%w for longer than %s; try again later", errImporting, importWait)
	}
	token, err := s.lockImport(ctx, ws, false)
	if err != nil {
		return err
	}
	if token == "" {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
			return nil
		}
	}
	defer s.endImport(ctx, ws, token)
	if err := s.finishImport(ctx, ws, token); !errors.Is(err, errPlanDropped) {
		return err
	}
	return nil // the caller's own write goes on
}

// lockImport takes ws's import lock. With wait it waits for another
// holder (bounded by importWait and ctx); without, it answers "" when the
// lock is held.
func (s *Store) lockImport(ctx context.Context, ws string, wait bool) (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	token := hex.EncodeToString(b[:])
	lock := s.importKeys(ws)[0]
	deadline := time.Now().Add(importWait)
	for {
		_, err := s.do(ctx, func(b rueidis.Builder) rueidis.Completed {
			return b.Set().Key(lock).Value(token).Nx().PxMilliseconds(importLease.Milliseconds()).Build()
		})
		switch {
		case err == nil:
			return token, nil
		case !rueidis.IsRedisNil(err):
			return "", err
		case !wait:
			return "", nil
		case time.Now().After(deadline):
			return "", fmt.Errorf("%w for longer than %s; try again later", errImporting, importWait)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// endImport releases the import lock held with token. A plan left behind
// (a step that failed after the commit mark) is finished by the next
// contact write; an error here leaves the lock to its expiry.
func (s *Store) endImport(ctx context.Context, ws, token string) {
	_, _ = s.run(context.WithoutCancel(ctx), importEnd, s.importKeys(ws)[:1], token)
}

// finishImport applies what a committed import left, or drops what an
// uncommitted one staged; the caller holds the lock.
func (s *Store) finishImport(ctx context.Context, ws, token string) error {
	keys := s.importKeys(ws)
	r, err := s.do(ctx, func(b rueidis.Builder) rueidis.Completed { return b.Exists().Key(keys[2]).Build() })
	if err != nil {
		return err
	}
	if committed, _ := r.AsInt64(); committed == 0 {
		_, err := s.do(ctx, func(b rueidis.Builder) rueidis.Completed { return b.Del().Key(keys[1]).Build() })
		return err
	}
	return s.applyPlan(ctx, ws, token)
}

// applyPlan applies the committed plan's chunks, one script each.
func (s *Store) applyPlan(ctx context.Context, ws, token string) error {
	keys := s.importKeys(ws)
	lease := strconv.FormatInt(importLease.Milliseconds(), 10)
	for {
		r, err := s.runFor(ctx, importChunk*perContact, importStep, keys, s.ws(ws), token, lease)
		if err != nil {
			return err
		}
		res, err := r.ToArray()
		if err != nil || len(res) == 0 {
			return fmt.Errorf("redis: import step: unexpected reply: %v", err)
		}
		switch ok, _ := res[0].AsInt64(); ok {
		case 2:
			return errors.New("redis: import step: the import lock was lost")
		case 0:
			// Something wrote contacts past the lock (an instance of an
			// older version, during an upgrade): the rest of the plan no
			// longer fits. It is dropped, not retried forever, so that
			// the workspace's contact writes do not stall behind it.
			_, _ = s.do(ctx, func(b rueidis.Builder) rueidis.Completed { return b.Del().Key(keys[1], keys[2]).Build() })
			var owner string
			if len(res) == 3 {
				owner, _ = res[2].ToString()
			}
			err := fmt.Errorf("an email in the plan now belongs to contact %s", owner)
			s.log.Error("a large import of contacts stopped part way: a planned contact no longer fits; the rest of it was dropped",
				zap.String("workspace", ws), zap.Error(err))
			return fmt.Errorf("%w: %v", errPlanDropped, err)
		}
		left, _ := res[1].AsInt64()
		if left < 0 {
			return nil
		}
		if _, err := s.endedSessions(ws, res[2:]); err != nil {
			return err
		}
	}
}

// importContacts writes a large batch in steps: plan turns the stored
// contacts (by id) into the records to write, or refuses.
func (s *Store) importContacts(ctx context.Context, ws string, plan func(stored map[string]storage.Contact) ([]storage.Contact, error)) error {
	token, err := s.lockImport(ctx, ws, true)
	if err != nil {
		return err
	}
	defer s.endImport(ctx, ws, token)
	if err := s.finishImport(ctx, ws, token); err != nil && !errors.Is(err, errPlanDropped) {
		return fmt.Errorf("finishing an earlier import: %w", err)
	}
	stored, err := s.storedContacts(ctx, ws)
	if err != nil {
		return err
	}
	write, err := plan(stored)
	if err != nil || len(write) == 0 {
		return err
	}
	if err := s.stage(ctx, ws, token, write); err != nil {
		return fmt.Errorf("staging contacts: %w", err)
	}
	if err := s.applyPlan(ctx, ws, token); err != nil {
		return fmt.Errorf("writing contacts (finished at the next contact write): %w", err)
	}
	// Every contact written may be in this instance's caches.
	written := make([]string, len(write))
	for i, c := range write {
		written[i] = s.contactKey(ws, c.ID)
	}
	s.written.mark(written...)
	return nil
}

// stage writes the plan's chunks, the mark with the last.
func (s *Store) stage(ctx context.Context, ws, token string, write []storage.Contact) error {
	now := s.now().UTC()
	keys := s.importKeys(ws)
	lease := strconv.FormatInt(importLease.Milliseconds(), 10)
	var batch []string
	size := 0
	flush := func(commit bool) error {
		mark := "0"
		if commit {
			mark = "1"
		}
		args := append([]string{token, lease, mark}, batch...)
		r, err := s.runFor(ctx, time.Second, importStage, keys, args...)
		if err != nil {
			return err
		}
		if ok, _ := r.AsInt64(); ok != 1 {
			return errors.New("the import lock was lost")
		}
		batch, size = batch[:0], 0
		return nil
	}
	for start := 0; start < len(write); start += importChunk {
		end := min(start+importChunk, len(write))
		chunk := make([][4]string, 0, end-start)
		for _, c := range write[start:end] {
			c.UpdatedAt = now
			doc, err := json.Marshal(c)
			if err != nil {
				return err
			}
			chunk = append(chunk, [4]string{c.ID, c.Email, c.DirectoryID, string(doc)})
		}
		b, err := json.Marshal(chunk)
		if err != nil {
			return err
		}
		if size+len(b) > stageBytes && len(batch) > 0 {
			if err := flush(false); err != nil {
				return err
			}
		}
		batch, size = append(batch, string(b)), size+len(b)
	}
	return flush(true)
}

// storedContacts reads every contact of ws, by id, in bounded calls.
func (s *Store) storedContacts(ctx context.Context, ws string) (map[string]storage.Contact, error) {
	list, err := s.Contacts(ctx, ws)
	if err != nil {
		return nil, err
	}
	stored := make(map[string]storage.Contact, len(list))
	for _, c := range list {
		stored[c.ID] = c
	}
	return stored, nil
}
