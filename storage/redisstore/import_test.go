package redisstore_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/kdesk/portalgate/storage"
	"github.com/kdesk/portalgate/storage/redisstore"
	"github.com/kdesk/portalgate/storage/storagetest"
)

// stagePlan writes what an importer leaves when it dies after staging
// chunks of 500 (and, with committed, the mark), its lock expired.
func stagePlan(t *testing.T, srv *redisServer, pre string, cs []storage.Contact, committed bool) {
	t.Helper()
	for start := 0; start < len(cs); start += 500 {
		var chunk [][4]string
		for _, c := range cs[start:min(start+500, len(cs))] {
			doc, err := json.Marshal(c)
			if err != nil {
				t.Fatal(err)
			}
			chunk = append(chunk, [4]string{c.ID, c.Email, c.DirectoryID, string(doc)})
		}
		b, _ := json.Marshal(chunk)
		if _, err := command(srv.addr(), "RPUSH", pre+"imp:plan", string(b)); err != nil {
			t.Fatal(err)
		}
	}
	if committed {
		if _, err := command(srv.addr(), "SET", pre+"imp:mark", "1"); err != nil {
			t.Fatal(err)
		}
	}
}

// TestInterruptedImport: an import in steps whose importer died is
// finished by the next contact write, on any instance, once committed;
// before the mark, its staged chunks are dropped and nothing is applied.
func TestInterruptedImport(t *testing.T) {
	srv := startRedis(t, false)
	for _, committed := range []bool{true, false} {
		t.Run(fmt.Sprintf("committed=%v", committed), func(t *testing.T) {
			ctx := t.Context()
			prefix := uniquePrefix()
			pre := prefix + "{ws:acme}:"
			s := open(t, srv, redisstore.Options{KeyPrefix: prefix})
			cs := storagetest.Directory(1500)
			stagePlan(t, srv, pre, cs[:1499], committed)
			one := []storage.Contact{cs[1499]}
			if err := s.PutContacts(ctx, "acme", one); err != nil {
				t.Fatal(err)
			}
			list, err := s.Contacts(ctx, "acme")
			if err != nil {
				t.Fatal(err)
			}
			want := 1
			if committed {
				want = 1500
			}
			if len(list) != want {
				t.Fatalf("after the next write: %d contacts, want %d", len(list), want)
			}
			if !committed {
				// The next import drops the staged chunks before its own.
				if err := s.PutContacts(ctx, "acme", storagetest.Directory(600)); err != nil {
					t.Fatal(err)
				}
				if n, _ := command(srv.addr(), "EXISTS", pre+"imp:plan"); n != "0" {
					t.Error("staged chunks of an uncommitted import were kept")
				}
				if list, _ := s.Contacts(ctx, "acme"); len(list) != 601 {
					t.Errorf("after the next import: %d contacts, want 601", len(list))
				}
			}
			for _, k := range []string{"imp:lock", "imp:mark"} {
				if n, _ := command(srv.addr(), "EXISTS", pre+k); n != "0" {
					t.Errorf("%s left behind", k)
				}
			}
		})
	}
}

// TestStaleImportDropped: a committed plan that no longer fits (an email
// taken meanwhile past the lock, as by an instance of an older version) is
// dropped where it stops, not retried forever: the next contact write
// goes through.
func TestStaleImportDropped(t *testing.T) {
	srv := startRedis(t, false)
	ctx := t.Context()
	prefix := uniquePrefix()
	pre := prefix + "{ws:acme}:"
	s := open(t, srv, redisstore.Options{KeyPrefix: prefix})
	taken := storage.Contact{ID: "x-1", Email: storagetest.Directory(1)[0].Email, Status: storage.StatusActive, Source: storage.SourceManual}
	if err := s.PutContacts(ctx, "acme", []storage.Contact{taken}); err != nil {
		t.Fatal(err)
	}
	stagePlan(t, srv, pre, storagetest.Directory(1000), true)
	next := storagetest.Directory(1001)[1000:]
	if err := s.PutContacts(ctx, "acme", next); err != nil {
		t.Fatalf("a write after a stale plan: %v", err)
	}
	for _, k := range []string{"imp:plan", "imp:mark", "imp:lock"} {
		if n, _ := command(srv.addr(), "EXISTS", pre+k); n != "0" {
			t.Errorf("%s left behind", k)
		}
	}
	if c, err := s.ContactByEmail(ctx, "acme", taken.Email); err != nil || c.ID != taken.ID {
		t.Errorf("the taken email = %+v, %v; want it kept by %s", c, err, taken.ID)
	}
	if _, err := s.Contact(ctx, "acme", next[0].ID); err != nil {
		t.Errorf("the write after the stale plan: %v", err)
	}
}

// TestWriteWaitsForImport: while another importer holds the lock, a
// one-step contact write waits for it, then goes through.
func TestWriteWaitsForImport(t *testing.T) {
	srv := startRedis(t, false)
	prefix := uniquePrefix()
	s := open(t, srv, redisstore.Options{KeyPrefix: prefix})
	if _, err := command(srv.addr(), "SET", prefix+"{ws:acme}:imp:lock", "someone-else", "PX", "300"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := s.PutContacts(t.Context(), "acme", storagetest.Directory(1)); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(start); waited < 250*time.Millisecond {
		t.Fatalf("the write went through after %s, with the lock held for 300 ms", waited)
	}
	if _, err := s.DeleteContact(t.Context(), "acme", storagetest.Directory(1)[0].ID); err != nil {
		t.Fatal(err)
	}
}

// TestImportScale measures large imports (PORTALGATE_IMPORT_CONTACTS
// contacts) and how long other calls wait for Redis meanwhile.
func TestImportScale(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("PORTALGATE_IMPORT_CONTACTS"))
	if n <= 0 {
		t.Skip("set PORTALGATE_IMPORT_CONTACTS to the number of contacts")
	}
	srv := startRedis(t, false)
	prefix := uniquePrefix()
	s := open(t, srv, redisstore.Options{KeyPrefix: prefix})
	before := usedMemory(t, srv)

	// Another client's GETs, timed while the imports run.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var worst time.Duration
	calls := 0
	conn, err := net.Dial("tcp", srv.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	wg.Add(1)
	go func() {
		defer wg.Done()
		r := bufio.NewReader(conn)
		for {
			select {
			case <-stop:
				return
			default:
			}
			start := time.Now()
			if _, err := io.WriteString(conn, "*2\r\n$3\r\nGET\r\n$5\r\nprobe\r\n"); err != nil {
				t.Error(err)
				return
			}
			if _, err := r.ReadString('\n'); err != nil {
				t.Error(err)
				return
			}
			worst = max(worst, time.Since(start))
			calls++
			time.Sleep(time.Millisecond)
		}
	}()
	storagetest.MeasureImport(t, s, "acme", n)
	close(stop)
	wg.Wait()
	t.Logf("meanwhile another client's GET waited at most %s (%d calls)", worst.Round(100*time.Microsecond), calls)
	if out, err := exec.Command("redis-cli", "-p", strconv.Itoa(srv.port), "SLOWLOG", "GET", "8").Output(); err == nil {
		t.Logf("slowest commands:\n%s", out)
	}

	after := usedMemory(t, srv)
	// MEMORY USAGE of one contact's keys: the record and its email and
	// directory indexes (half the contacts have one), plus its share of
	// the id set.
	c := storagetest.Directory(n)[0]
	pre := prefix + "{ws:acme}:"
	var per float64
	for _, k := range []string{"c:" + c.ID, "ce:" + c.Email} {
		per += float64(memoryUsage(t, srv, pre+k))
	}
	per += float64(memoryUsage(t, srv, pre+"cd:"+c.DirectoryID)) / 2
	per += float64(memoryUsage(t, srv, pre+"ids")) / float64(n)
	t.Logf("Redis MEMORY USAGE per contact: %.0f bytes (record, indexes, share of the id set); used_memory grew by %.0f bytes per contact",
		per, float64(after-before)/float64(n))
}
