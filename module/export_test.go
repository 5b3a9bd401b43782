package module

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kdesk/portalgate/storage"
	"github.com/kdesk/portalgate/storage/badgerstore"
	"github.com/kdesk/portalgate/storage/storagetest"
)

// seedAudit appends n events to acme, one millisecond apart starting
// from the clock's time (which it then moves past them), from a few
// goroutines, and returns their ids' count by event name.
func seedAudit(t testing.TB, s storage.Store, clock *storagetest.Clock, n int) map[string]int {
	t.Helper()
	start := clock.Now()
	clock.Advance(time.Duration(n)*time.Millisecond + time.Second)
	names := []string{"code_sent", "code_accepted", "link_opened", "sso_failure"}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				e := storage.AuditEvent{Time: start.Add(time.Duration(i) * time.Millisecond), Workspace: "acme",
					Event: names[i%len(names)], ContactID: "c-" + strconv.Itoa(i%7), Email: "jane@acme.example",
					Method: "code", ClientIP: "192.0.2.7", UserAgent: "Mozilla/5.0 (X11; Linux x86_64)", Reason: "event " + strconv.Itoa(i)}
				if i == 3 {
					e.Reason = "a \"quoted\", comma\nand newline"
					e.UserAgent = "=HYPERLINK(\"http://evil.example\")"
				}
				if err := s.AppendAudit(context.Background(), e); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	byName := map[string]int{}
	for i := range n {
		byName[names[i%len(names)]]++
	}
	return byName
}

func openExportStore(t testing.TB) (storage.Store, *storagetest.Clock) {
	t.Helper()
	clock := storagetest.NewClock()
	s, err := badgerstore.Open(t.TempDir(), badgerstore.Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, clock
}

// TestAuditExport exports 20,000 events: each exactly once, newest first,
// in pages (one flush per page), as NDJSON and as well-formed CSV; filters
// apply to the whole range.
func TestAuditExport(t *testing.T) {
	const n = 20000
	s, clock := openExportStore(t)
	byName := seedAudit(t, s, clock, n)
	ctx := context.Background()

	var buf bytes.Buffer
	flushes := 0
	got, err := exportAudit(ctx, s, storage.AuditQuery{Workspace: "acme", Limit: 5}, "ndjson", &buf, func() { flushes++ })
	if err != nil || got != n {
		t.Fatalf("exportAudit = %d, %v; want %d", got, err, n)
	}
	if flushes < n/exportPage {
		t.Errorf("%d flushes for %d events; want one per page of %d", flushes, n, exportPage)
	}
	sc := bufio.NewScanner(&buf)
	sc.Buffer(nil, 1<<20)
	seen := map[string]bool{}
	prev := ""
	var prevTime time.Time
	for sc.Scan() {
		var e storage.AuditEvent
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("line %d: %v: %s", len(seen)+1, err, sc.Text())
		}
		if seen[e.ID] {
			t.Fatalf("event %s twice", e.ID)
		}
		seen[e.ID] = true
		if prev != "" && (e.ID >= prev || e.Time.After(prevTime)) {
			t.Fatalf("event %s (%s) after %s (%s): not newest first", e.ID, e.Time, prev, prevTime)
		}
		prev, prevTime = e.ID, e.Time
	}
	if len(seen) != n {
		t.Fatalf("%d distinct events exported, want %d", len(seen), n)
	}

	// Filters cover the whole range, not one page.
	buf.Reset()
	got, err = exportAudit(ctx, s, storage.AuditQuery{Workspace: "acme", Event: "link_opened"}, "ndjson", &buf, nil)
	if err != nil || got != byName["link_opened"] || bytes.Count(buf.Bytes(), []byte("\n")) != got {
		t.Fatalf("link_opened export: %d events, %v; want %d", got, err, byName["link_opened"])
	}

	buf.Reset()
	got, err = exportAudit(ctx, s, storage.AuditQuery{Workspace: "acme"}, "csv", &buf, nil)
	if err != nil || got != n {
		t.Fatalf("csv export = %d, %v", got, err)
	}
	rows, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatalf("the CSV does not parse: %v", err)
	}
	if len(rows) != n+1 || fmt.Sprint(rows[0]) != fmt.Sprint(auditCSVHeader) {
		t.Fatalf("%d rows, header %v", len(rows), rows[0])
	}
	ids := map[string]bool{}
	for i, r := range rows[1:] {
		if len(r) != len(auditCSVHeader) {
			t.Fatalf("row %d has %d fields", i+1, len(r))
		}
		if _, err := time.Parse(time.RFC3339Nano, r[1]); err != nil {
			t.Fatalf("row %d: time %q", i+1, r[1])
		}
		if i > 0 && r[0] >= rows[i][0] {
			t.Fatalf("row %d: id %s after %s", i+1, r[0], rows[i][0])
		}
		ids[r[0]] = true
		if r[10] == "event 3" || r[10] == "a \"quoted\", comma\nand newline" {
			if r[10] != "a \"quoted\", comma\nand newline" || r[9] != "'=HYPERLINK(\"http://evil.example\")" {
				t.Fatalf("event 3 in CSV: user agent %q, reason %q", r[9], r[10])
			}
		}
	}
	if len(ids) != n {
		t.Fatalf("%d distinct ids in the CSV", len(ids))
	}
	if _, err := exportAudit(ctx, s, storage.AuditQuery{Workspace: "acme"}, "xml", io.Discard, nil); err == nil {
		t.Fatal("format xml: no error")
	}
}

// TestAuditExportScale measures an export of PORTALGATE_EXPORT_EVENTS
// events (such as 10000000, over 100 times fewer contacts, written in
// bulk): time, and the heap in use while it runs, its peak in each tenth
// of the export, which stays flat when memory is constant. Too slow for
// CI, so it runs only when asked.
func TestAuditExportScale(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("PORTALGATE_EXPORT_EVENTS"))
	if n <= 0 {
		t.Skip("set PORTALGATE_EXPORT_EVENTS=10000000 to measure a large export")
	}
	s, clock := openExportStore(t)
	seeded := time.Now()
	bs := s.(*badgerstore.Store)
	storagetest.FillAudit(t, func(es []storage.AuditEvent) error { return bs.ImportAudit(context.Background(), es) },
		0, n, n, clock.Now().Add(-60*24*time.Hour), 60*24*time.Hour)
	t.Logf("seeded %d events in %s", n, time.Since(seeded).Round(time.Millisecond))

	formats := []string{"ndjson", "csv"}
	if f := os.Getenv("PORTALGATE_EXPORT_FORMATS"); f != "" {
		formats = strings.Split(f, ",") // such as ndjson alone
	}
	for _, format := range formats {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		base := ms.HeapInuse
		out := &countingWriter{}
		tenths := make([]atomic.Uint64, 10)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			tick := time.NewTicker(5 * time.Millisecond)
			defer tick.Stop()
			for {
				var m runtime.MemStats
				runtime.ReadMemStats(&m)
				tenth := &tenths[min(9, int(out.lines.Load()*10/int64(n)))]
				if m.HeapInuse > tenth.Load() {
					tenth.Store(m.HeapInuse)
				}
				select {
				case <-stop:
					return
				case <-tick.C:
				}
			}
		})
		start := time.Now()
		got, err := exportAudit(context.Background(), s, storage.AuditQuery{Workspace: "acme"}, format, out, nil)
		took := time.Since(start)
		close(stop)
		wg.Wait()
		if err != nil || got != n {
			t.Fatalf("%s export = %d, %v; want %d", format, got, err, n)
		}
		var peaks []string
		peak := uint64(0)
		for i := range tenths {
			peaks = append(peaks, fmt.Sprintf("%.0f", float64(tenths[i].Load())/1e6))
			peak = max(peak, tenths[i].Load())
		}
		t.Logf("%s: %d events, %.1f MB in %s (%.0f events/s); heap in use %.1f MB before, peak %.1f MB during (+%.1f MB), peak of each tenth %v MB; peak RSS of the process %s",
			format, got, float64(out.n.Load())/1e6, took.Round(time.Millisecond), float64(got)/took.Seconds(),
			float64(base)/1e6, float64(peak)/1e6, (float64(peak)-float64(base))/1e6, peaks, peakRSS())
	}
}

// countingWriter counts bytes and lines written.
type countingWriter struct{ n, lines atomic.Int64 }

func (w *countingWriter) Write(p []byte) (int, error) {
	w.n.Add(int64(len(p)))
	w.lines.Add(int64(bytes.Count(p, []byte("\n"))))
	return len(p), nil
}

// peakRSS reads VmHWM from /proc (Linux), or says it cannot.
func peakRSS() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "unknown"
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if bytes.HasPrefix(line, []byte("VmHWM:")) {
			return string(bytes.TrimSpace(line[len("VmHWM:"):]))
		}
	}
	return "unknown"
}
