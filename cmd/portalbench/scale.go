package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kdesk/portalgate/handlers"
	"github.com/kdesk/portalgate/integration/e2e"
	"github.com/kdesk/portalgate/storage"
	"github.com/kdesk/portalgate/storage/badgerstore"
	"github.com/kdesk/portalgate/storage/redisstore"
	"github.com/kdesk/portalgate/storage/storagetest"
)

// A large customer base on Badger: n contacts, each with one live session,
// written straight into a store directory through the store API, then the
// real Caddy started on it. Measures start to serving (process start to
// the first 200 on a gated page), RSS at steady state (after a sample of
// the sessions under load, and after every session once), gate throughput
// against a small store's, and the admin API's first contacts page. The
// same run on a small store (scaleSmall contacts and sessions) comes
// first, as the reference.

// scaleSmall is the size of the reference store: every session and
// contact fits the store's hot caches.
const scaleSmall = 1000

// scaleSample is how many sessions the steady-state load draws from.
const scaleSample = 100_000

type scaleResult struct {
	n                     int
	seedContacts, seedSes time.Duration
	diskMB                float64
	startToServing        time.Duration
	idle, sample, all     memReading
	peak                  string
	ref, hot, spread      *target
	hotRatio, spreadRatio float64 // medians over the rounds of gated / bare + 4 headers
	// warmRatio is spreadRatio once every session has been read (the
	// caches as full as they get); warmRef is its reference.
	warmRef, warm *target
	warmRatio     float64
	page, pageMid []time.Duration
}

type memReading struct{ rss, anon, file, heap string }

func scale(caddyBin, backend string, n, rounds int, d time.Duration, conns int) error {
	if backend != "badger" && backend != "redis" {
		return fmt.Errorf("unknown -storage %q", backend)
	}
	var results []*scaleResult
	for _, size := range []int{scaleSmall, n} {
		r, err := scaleRun(caddyBin, backend, size, rounds, d, conns)
		if err != nil {
			return fmt.Errorf("%d contacts and sessions: %w", size, err)
		}
		results = append(results, r)
	}
	fmt.Printf("portalbench -scale: storage %s, %d rounds × %s per target, %d connections, %s\n\n", backend, rounds, d, conns, time.Now().UTC().Format("2006-01-02"))
	fmt.Println("| contacts = live sessions | seed (contacts / sessions) | store size (Badger: on disk; Redis: used_memory) | start to serving | RSS idle | RSS after 10 s of a 100k-session sample | RSS after every session once | peak RSS |")
	fmt.Println("| ---: | ---: | ---: | ---: | --- | --- | --- | ---: |")
	for _, r := range results {
		fmt.Printf("| %d | %s / %s | %.0f MB | %s | %s | %s | %s | %s |\n", r.n, r.seedContacts.Round(time.Millisecond), r.seedSes.Round(time.Millisecond),
			r.diskMB, r.startToServing.Round(time.Millisecond), r.idle, r.sample, r.all, r.peak)
	}
	fmt.Println("\nRSS as total (anonymous + file-backed, from /proc/<pid>/smaps_rollup; Go heap in use from /debug/vars)")
	fmt.Println("\n| contacts = live sessions | bare + 4 headers | gated, one session | gated, a random session of all | one / bare + 4 h | random / bare + 4 h | random, each read before / bare + 4 h | GET contacts?limit=100 p50 / p99 | a middle page p50 / p99 |")
	fmt.Println("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, r := range results {
		fmt.Printf("| %d | %.0f req/s | %.0f req/s | %.0f req/s | %.3f | %.3f | %.3f | %s / %s | %s / %s |\n", r.n, r.ref.rate(), r.hot.rate(), r.spread.rate(),
			r.hotRatio, r.spreadRatio, r.warmRatio, durPct(r.page, 0.5), durPct(r.page, 0.99), durPct(r.pageMid, 0.5), durPct(r.pageMid, 0.99))
	}
	for _, r := range results {
		for _, t := range []*target{r.ref, r.hot, r.spread, r.warmRef, r.warm} {
			if t.errors.Load() > 0 {
				return fmt.Errorf("%d contacts: %d requests to %s failed", r.n, t.errors.Load(), t.name)
			}
		}
	}
	return nil
}

func (m memReading) String() string {
	return fmt.Sprintf("%s (%s + %s; heap %s)", m.rss, m.anon, m.file, m.heap)
}

func scaleRun(caddyBin, backend string, n, rounds int, d time.Duration, conns int) (*scaleResult, error) {
	dir, err := os.MkdirTemp("", "portalbench-scale-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	res := &scaleResult{n: n}
	fmt.Fprintf(os.Stderr, "portalbench -scale: seeding %d contacts and sessions (%s, %s)\n", n, backend, dir)
	storageCfg := fmt.Sprintf("storage_dir %s/portal", dir)
	if badgerCompression != "" {
		storageCfg = fmt.Sprintf("storage badger {\n\t\t\tdir %s/portal\n\t\t\tcompression %s\n\t\t}", dir, badgerCompression)
	}
	var store storage.Store
	var redisAddr string
	if backend == "redis" {
		port, err := e2e.FreePort()
		if err != nil {
			return nil, err
		}
		redis := exec.Command("redis-server", "--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
		if err := redis.Start(); err != nil {
			return nil, fmt.Errorf("starting redis-server: %w", err)
		}
		defer func() { _ = redis.Process.Kill(); _ = redis.Wait() }()
		redisAddr = fmt.Sprintf("127.0.0.1:%d", port)
		if err := e2e.WaitListening(redisAddr, 10*time.Second); err != nil {
			return nil, err
		}
		rs, err := redisstore.Open(redisstore.Options{Address: []string{redisAddr}, CallTimeout: time.Minute})
		if err != nil {
			return nil, err
		}
		store = rs
		storageCfg = fmt.Sprintf("storage redis {\n\t\t\taddress %s\n\t\t}", redisAddr)
	} else {
		bs, err := badgerstore.Open(filepath.Join(dir, "portal"), badgerstore.Options{Compression: badgerCompression})
		if err != nil {
			return nil, err
		}
		store = bs
	}
	cookies, err := seed(store, n, res)
	if cerr := store.(io.Closer).Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("seeding: %w", err)
	}
	res.diskMB = float64(dirSize(filepath.Join(dir, "portal"))) / (1 << 20)
	if backend == "redis" {
		res.diskMB = redisUsedMB(redisAddr)
	}

	var ports [4]int
	for i := range ports {
		if ports[i], err = e2e.FreePort(); err != nil {
			return nil, err
		}
	}
	adminPort, gatedPort, headersPort, upPort := ports[0], ports[1], ports[2], ports[3]
	cfg := fmt.Sprintf(`{
	admin 127.0.0.1:%d
	persist_config off
	auto_https off
	storage file_system %s/caddy
	log {
		level ERROR
	}
	portal {
		%s
		mail log
		workspace bench {
			title Bench
			url http://127.0.0.1:%d
			session_ttl 12h
		}
	}
}

http://127.0.0.1:%d {
	portal_auth bench
	reverse_proxy 127.0.0.1:%d
}

http://127.0.0.1:%d {
	request_header X-Portal-Contact-Id c-000000
	request_header X-Portal-Contact-Email p000000@acme.example
	request_header X-Portal-Contact-Name "Person 0"
	request_header X-Portal-Workspace bench
	reverse_proxy 127.0.0.1:%d
}

http://127.0.0.1:%d {
	respond "ok" 200
}
`, adminPort, dir, storageCfg, gatedPort, gatedPort, upPort, headersPort, upPort, upPort)
	gatedURL := fmt.Sprintf("http://127.0.0.1:%d/tickets/1", gatedPort)
	start := time.Now()
	stop, err := startCaddy(caddyBin, dir, cfg, 60*time.Second, gatedPort, headersPort, upPort)
	if err != nil {
		return nil, err
	}
	defer stop()
	if err := waitServing(gatedURL, cookies[0], 60*time.Second); err != nil {
		return nil, err
	}
	res.startToServing = time.Since(start)
	admin := fmt.Sprintf("http://127.0.0.1:%d", adminPort)
	time.Sleep(2 * time.Second)
	res.idle = readMem(admin)

	// Steady state under load: random sessions of a sample.
	sample := cookies[:min(len(cookies), scaleSample)]
	warm := &target{name: "gated, a random session of the sample", url: gatedURL, cookies: sample}
	if err := warm.load(conns, 10*time.Second); err != nil {
		return nil, err
	}
	if warm.errors.Load() > 0 {
		return nil, fmt.Errorf("%d requests of the sample failed", warm.errors.Load())
	}
	res.sample = readMem(admin)

	// Throughput, interleaved: the reference, one hot session, a random
	// session of all.
	res.ref = &target{name: "bare + 4 headers", url: fmt.Sprintf("http://127.0.0.1:%d/tickets/1", headersPort)}
	res.hot = &target{name: "gated, one session", url: gatedURL, cookie: cookies[0]}
	res.spread = &target{name: "gated, a random session of all", url: gatedURL, cookies: cookies}
	all := []*target{res.ref, res.hot, res.spread}
	for _, t := range all {
		_ = t.load(conns, time.Second)
		t.reset()
	}
	var hot, spread []float64
	for i := range rounds {
		for j := range all {
			if err := all[(i+j)%len(all)].load(conns, d); err != nil {
				return nil, err
			}
		}
		hot = append(hot, res.hot.lastRate/res.ref.lastRate)
		spread = append(spread, res.spread.lastRate/res.ref.lastRate)
	}
	slices.Sort(hot)
	slices.Sort(spread)
	res.hotRatio, res.spreadRatio = quantile(hot, 0.5), quantile(spread, 0.5)

	// Every session once.
	if err := sweep(gatedURL, cookies, conns); err != nil {
		return nil, err
	}
	time.Sleep(2 * time.Second)
	res.all = readMem(admin)

	// A random session of all again, now that each has been read once:
	// what the caches hold of them.
	res.warmRef = &target{name: "bare + 4 headers", url: res.ref.url}
	res.warm = &target{name: "gated, a random session of all, each read before", url: gatedURL, cookies: cookies}
	var warmed []float64
	for i := range rounds {
		pair := []*target{res.warmRef, res.warm}
		for j := range pair {
			if err := pair[(i+j)%2].load(conns, d); err != nil {
				return nil, err
			}
		}
		warmed = append(warmed, res.warm.lastRate/res.warmRef.lastRate)
	}
	slices.Sort(warmed)
	res.warmRatio = quantile(warmed, 0.5)

	// The admin API's contacts, a page at a time: the first page, and one
	// from the middle.
	mid := fmt.Sprintf("c-%06d", n/2)
	// A failed page is reported, not fatal: the figures above stand.
	for range 200 {
		dur, err := getPage(admin + "/portal/workspaces/bench/contacts?limit=100")
		if err == nil {
			res.page = append(res.page, dur)
			if dur, err = getPage(admin + "/portal/workspaces/bench/contacts?limit=100&cursor=" + mid); err == nil {
				res.pageMid = append(res.pageMid, dur)
			}
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "portalbench -scale: %d contacts: %v\n", n, err)
			break
		}
	}
	slices.Sort(res.page)
	slices.Sort(res.pageMid)
	res.peak = procStatus(caddyPID, "VmHWM")
	return res, nil
}

// seed writes n contacts (storagetest.Directory) and one live session for
// each into store, through the store API, and returns the sessions'
// cookies in contact order.
func seed(store storage.Store, n int, res *scaleResult) ([]string, error) {
	ctx := context.Background()
	cs := storagetest.Directory(n)
	t0 := time.Now()
	// Calls of 200: one transaction each, no journal.
	for b := range slices.Chunk(cs, 200) {
		if err := store.PutContacts(ctx, "bench", b); err != nil {
			return nil, err
		}
	}
	res.seedContacts = time.Since(t0)
	t0 = time.Now()
	now := time.Now()
	// Seen as of later than the run ends, so that no session is due for
	// its activity refresh (one write per session every 5 minutes at most)
	// while the run measures reads.
	seen := now.Add(2 * time.Hour)
	cookies := make([]string, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for range 16 {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				id := handlers.NewID()
				err := store.PutSession(ctx, storage.Session{IDHash: handlers.HashID(id), Workspace: "bench",
					ContactID: cs[i].ID, Method: "code", ClientIP: "203.0.113.7",
					UserAgent: "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
					CreatedAt: now, LastSeen: seen, ExpiresAt: now.Add(12 * time.Hour), Idle: 12 * time.Hour})
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				cookies[i] = "portal_session=" + id
			}
		})
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return nil, err
	}
	res.seedSes = time.Since(t0)
	return cookies, nil
}

// waitServing polls url with the cookie until it answers 200.
func waitServing(url, cookie string, within time.Duration) error {
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	deadline := time.Now().Add(within)
	for {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header.Set("Accept", "text/html")
		req.Header.Set("Cookie", cookie)
		resp, err := client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no 200 from %s within %s (last: %v)", url, within, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// getPage fetches one page of the admin API's contacts and checks it.
func getPage(url string) (time.Duration, error) {
	t0 := time.Now()
	resp, err := http.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var page struct {
		Contacts []storage.Contact `json:"contacts"`
		Next     string            `json:"next_cursor"`
	}
	err = json.NewDecoder(resp.Body).Decode(&page)
	dur := time.Since(t0)
	if err != nil || resp.StatusCode != http.StatusOK || len(page.Contacts) == 0 {
		return 0, fmt.Errorf("GET %s: %d, %d contacts, %v", url, resp.StatusCode, len(page.Contacts), err)
	}
	return dur, nil
}

// readMem reads Caddy's memory: RSS, anonymous and file-backed from
// smaps_rollup, and the Go heap in use from the admin endpoint's expvars.
func readMem(admin string) memReading {
	m := memReading{rss: "?", anon: "?", file: "?", heap: "?"}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", caddyPID)); err == nil {
		var rss, anon int
		for line := range strings.Lines(string(b)) {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			var kb int
			fmt.Sscan(f[1], &kb)
			switch f[0] {
			case "Rss:":
				rss = kb
			case "Anonymous:":
				anon = kb
			}
		}
		m.rss, m.anon, m.file = mb(rss), mb(anon), mb(rss-anon)
	}
	if resp, err := http.Get(admin + "/debug/vars"); err == nil {
		var v struct {
			Memstats struct{ HeapInuse uint64 } `json:"memstats"`
		}
		if json.NewDecoder(resp.Body).Decode(&v) == nil {
			m.heap = mb(int(v.Memstats.HeapInuse >> 10))
		}
		resp.Body.Close()
	}
	return m
}

func mb(kb int) string { return fmt.Sprintf("%.0f MB", float64(kb)/1024) }

func durPct(sorted []time.Duration, p float64) string {
	if len(sorted) == 0 {
		return "-"
	}
	v := sorted[int(float64(len(sorted)-1)*p)]
	if v < 10*time.Millisecond {
		return fmt.Sprintf("%.2f ms", float64(v)/float64(time.Millisecond))
	}
	return v.Round(time.Millisecond).String()
}

// pick returns a random element of cookies.
func pick(cookies []string) string { return cookies[rand.IntN(len(cookies))] }

var errNoScale = errors.New("-scale takes the number of contacts and sessions, at least 1000")

// redisUsedMB is the used_memory of the Redis server at addr, from
// redis-cli.
func redisUsedMB(addr string) float64 {
	host, port, _ := strings.Cut(addr, ":")
	out, err := exec.Command("redis-cli", "-h", host, "-p", port, "INFO", "memory").Output()
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(out)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
			var b float64
			fmt.Sscan(v, &b)
			return b / (1 << 20)
		}
	}
	return 0
}
