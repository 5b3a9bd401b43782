// Command portalbench measures what the gate costs: in one run on one
// machine, it drives a signed-in request through portal_auth +
// reverse_proxy, the same request through a bare reverse_proxy, through
// a bare reverse_proxy that adds the four identity headers itself, and
// through Caddy's own forward_auth asking a null auth server (started here,
// it answers 200 with the four identity headers at once: the best case of
// any forward-auth gateway) before the reverse_proxy, to the same
// upstream, interleaved round by round, and reports throughput, latency
// and Caddy's CPU per request of each. With -sessions it also
// reports Caddy's memory with that many live sessions; -scale N seeds N
// contacts and N live sessions into Badger and measures start to serving,
// memory, throughput and the admin API's contacts page against a small
// store (scale.go).
//
//	go run ./cmd/portalbench -caddy ./caddy [-rounds 60] [-duration 300ms] [-conns 16] [-storage badger|redis] [-sessions 100000]
//	go run ./cmd/portalbench -caddy ./caddy -rush 10000 [-clients 64] [-rate 600] [-storage badger|redis]
//	go run ./cmd/portalbench -caddy ./caddy -soak 30m [-soak-every 1m] [-soak-out docs/soak]
//	go run ./cmd/portalbench -caddy ./caddy -scale 1000000 [-rounds 20]
//
// `./xcaddy.sh bench` builds Caddy and runs it.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kdesk/portalgate/handlers"
	"github.com/kdesk/portalgate/integration/e2e"
	"github.com/kdesk/portalgate/storage"
	"github.com/kdesk/portalgate/storage/badgerstore"
)

func main() {
	caddyBin := flag.String("caddy", "./caddy", "Caddy binary built with portalgate")
	rounds := flag.Int("rounds", 60, "interleaved rounds (each measures every target once, in a rotating order)")
	duration := flag.Duration("duration", 300*time.Millisecond, "length of one measurement")
	conns := flag.Int("conns", 16, "concurrent keep-alive connections")
	backend := flag.String("storage", "badger", "portal storage: badger, or redis (starts redis-server on a free port)")
	flag.IntVar(&sessions, "sessions", 0, "Badger only: put this many more live sessions in the store before Caddy starts, read each once through the gate after the rounds, and report Caddy's RSS")
	flag.StringVar(&badgerCompression, "compression", "", "with -scale or -rush on Badger: the store's compression (none, snappy or zstd; default: the store's, zstd)")
	flag.StringVar(&profileOut, "cpuprofile", "", "write a CPU profile of Caddy to this file: after the rounds, under gated load; with -rush, 5 s from 2 s into the rush (the first instance)")
	flag.StringVar(&selfProfileOut, "selfprofile", "", "write a CPU profile of this process (the load generator and its SMTP server) to this file, for the whole run")
	rushN := flag.Int("rush", 0, "instead of the rounds: a sign-in rush of this many distinct contacts (email, code from a real SMTP server, session); on Badger, or with -storage redis on two Caddy instances sharing one Redis")
	rushClients := flag.Int("clients", 64, "with -rush: concurrent clients")
	rushRate := flag.Float64("rate", 0, "with -rush: start this many sign-ins per second (open loop) instead of as many as the clients can")
	flag.IntVar(&smtpConnections, "smtp-connections", 0, "with -rush: mail smtp { connections } (0: the default, following the outbox)")
	flag.IntVar(&outboxWorkers, "outbox-workers", 0, "with -rush: the portal's outbox_workers (0: the default, adapted to the deliveries' latency)")
	flag.DurationVar(&smtpDelay, "smtp-delay", 0, "with -rush: the SMTP server's replies reach Caddy this much later, as from a relay a round trip of this length away")
	flag.BoolVar(&rushTimeline, "timeline", false, "with -rush: also print, for every second of the rush, the mail latency of the codes asked for in it (p50, p99, max): where the tail comes from")
	var so soakOptions
	flag.DurationVar(&so.duration, "soak", 0, "instead of the rounds: a soak of this length (continuous sign-ins and signed-in GETs, on Badger), sampling Caddy's RSS, goroutines and store size")
	flag.DurationVar(&so.every, "soak-every", time.Minute, "with -soak: how often to sample")
	flag.StringVar(&so.out, "soak-out", "docs/soak", "with -soak: directory for soak.csv and soak.svg")
	flag.IntVar(&so.signInClients, "soak-signin-clients", 2, "with -soak: clients signing in continuously, each sign-in a new browser")
	flag.Float64Var(&so.signInRate, "soak-signins", 20, "with -soak: full sign-ins per second, all clients together")
	flag.IntVar(&so.getClients, "soak-get-clients", 8, "with -soak: signed-in clients sending GETs")
	flag.Float64Var(&so.getRate, "soak-gets", 400, "with -soak: signed-in GETs per second, all clients together")
	scaleN := flag.Int("scale", 0, "instead of the rounds: this many contacts and as many live sessions seeded into the store, then start to serving, RSS, throughput and the admin API's contacts page against a store of 1,000 (-rounds, -duration, -conns apply)")
	flag.Parse()
	if selfProfileOut != "" {
		f, err := os.Create(selfProfileOut)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "portalbench:", err)
			os.Exit(1)
		}
		defer func() { pprof.StopCPUProfile(); _ = f.Close() }()
	}
	var err error
	switch {
	case *scaleN != 0:
		err = errNoScale
		if *scaleN >= scaleSmall {
			err = scale(*caddyBin, *backend, *scaleN, *rounds, *duration, *conns)
		}
	case so.duration > 0:
		err = soak(*caddyBin, so)
	case *rushN > 0:
		err = rush(*caddyBin, *backend, *rushN, *rushClients, *rushRate)
	default:
		err = run(*caddyBin, *backend, *rounds, *duration, *conns)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "portalbench:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

var (
	profileOut     string
	selfProfileOut string
	sessions       int
)

func run(caddyBin, backend string, rounds int, d time.Duration, conns int) error {
	dir, mail, smtpHost, smtpPort, done, err := workplace("portalbench-")
	if err != nil {
		return err
	}
	defer done()

	storage := fmt.Sprintf("storage_dir %s/portal", dir)
	var cookies []string
	if sessions > 0 {
		if backend != "badger" {
			return errors.New("-sessions needs -storage badger")
		}
		if cookies, err = putSessions(filepath.Join(dir, "portal"), sessions); err != nil {
			return fmt.Errorf("putting %d sessions: %w", sessions, err)
		}
	}
	if backend == "redis" {
		addr, stop, err := startRedis()
		if err != nil {
			return err
		}
		defer stop()
		storage = "storage redis {\n\t\t\taddress " + addr + "\n\t\t}"
	} else if backend != "badger" {
		return fmt.Errorf("unknown -storage %q", backend)
	}

	var ports [7]int
	for i := range ports {
		if ports[i], err = e2e.FreePort(); err != nil {
			return err
		}
	}
	adminPort, gatedPort, barePort, headersPort, upPort := ports[0], ports[1], ports[2], ports[3], ports[4]
	forwardPort, nullAuthPort := ports[5], ports[6]
	stopNull, err := startNullAuth(nullAuthPort)
	if err != nil {
		return err
	}
	defer stopNull()
	contacts := filepath.Join(dir, "contacts.json")
	if err := os.WriteFile(contacts, []byte(`[{"id":"c-1","email":"bench@acme.example","name":"Bench"}]`), 0o600); err != nil {
		return err
	}
	caddyfile := fmt.Sprintf(`{
	admin 127.0.0.1:%d
	persist_config off
	auto_https off
	storage file_system %s/caddy
	log {
		level ERROR
	}
	portal {
		%s
		mail smtp {
			host %s
			port %s
			from bench@acme.example
			tls none
		}
		workspace bench {
			title Bench
			url http://127.0.0.1:%d
			contacts_file %s
		}
	}
}

http://127.0.0.1:%d {
	portal_auth bench
	reverse_proxy 127.0.0.1:%d
}

http://127.0.0.1:%d {
	reverse_proxy 127.0.0.1:%d
}

http://127.0.0.1:%d {
	request_header X-Portal-Contact-Id c-1
	request_header X-Portal-Contact-Email bench@acme.example
	request_header X-Portal-Contact-Name Bench
	request_header X-Portal-Workspace bench
	reverse_proxy 127.0.0.1:%d
}

http://127.0.0.1:%d {
	respond "ok" 200
}

http://127.0.0.1:%d {
	forward_auth 127.0.0.1:%d {
		uri /auth
		copy_headers X-Portal-Contact-Id X-Portal-Contact-Email X-Portal-Contact-Name X-Portal-Workspace
	}
	reverse_proxy 127.0.0.1:%d
}
`, adminPort, dir, storage, smtpHost, smtpPort, gatedPort, contacts, gatedPort, upPort, barePort, upPort, headersPort, upPort, upPort,
		forwardPort, nullAuthPort, upPort)
	stopCaddy, err := startCaddy(caddyBin, dir, caddyfile, 20*time.Second, gatedPort, barePort, headersPort, upPort, forwardPort)
	if err != nil {
		return err
	}
	defer stopCaddy()

	client := e2e.NewClient(fmt.Sprintf("http://127.0.0.1:%d", gatedPort), e2e.Options{Timeout: 10 * time.Second})
	client.Mailbox = mail
	if err := client.SignIn("bench@acme.example", "/tickets/1"); err != nil {
		return fmt.Errorf("signing in: %w", err)
	}
	session := client.Cookie("portal_session")
	if session == "" {
		return errors.New("no session cookie after signing in")
	}
	cookie := "portal_session=" + session

	bare := target{name: "reverse_proxy", url: fmt.Sprintf("http://127.0.0.1:%d/tickets/1", barePort)}
	gated := target{name: "portal_auth + reverse_proxy", url: fmt.Sprintf("http://127.0.0.1:%d/tickets/1", gatedPort), cookie: cookie}
	if os.Getenv("PORTALBENCH_AA") != "" {
		gated = target{name: "reverse_proxy (A/A)", url: bare.url}
	}
	// The reference: a bare reverse_proxy that adds the same four identity
	// headers with static values, what any gate would cost at best.
	headers := target{name: "reverse_proxy + the 4 identity headers (request_header)", url: fmt.Sprintf("http://127.0.0.1:%d/tickets/1", headersPort)}
	forward := target{name: "forward_auth (null auth server) + reverse_proxy", url: fmt.Sprintf("http://127.0.0.1:%d/tickets/1", forwardPort)}
	all := []*target{&bare, &gated, &headers, &forward}
	// Warm up every path (connections, caches, the kernel's TCP).
	for _, t := range all {
		t.load(conns, time.Second)
		t.reset()
	}
	// The machine's speed drifts from second to second (other tenants,
	// frequency), so each round measures every target back to back, in an
	// order that rotates, and the headline is the median of the rounds' own
	// ratios.
	var ratios, refRatios, overRef, overForward []float64
	for i := range rounds {
		for j := range all {
			if err := all[(i+j)%len(all)].load(conns, d); err != nil {
				return err
			}
		}
		ratios = append(ratios, gated.lastRate/bare.lastRate)
		refRatios = append(refRatios, headers.lastRate/bare.lastRate)
		overRef = append(overRef, gated.lastRate/headers.lastRate)
		overForward = append(overForward, gated.lastRate/forward.lastRate)
	}
	for _, r := range [][]float64{ratios, refRatios, overRef, overForward} {
		slices.Sort(r)
	}

	if profileOut != "" {
		done := make(chan error, 1)
		go func() {
			prof := target{name: gated.name, url: gated.url, cookie: gated.cookie}
			if os.Getenv("PORTALBENCH_PROFILE_BARE") != "" {
				prof.url = bare.url
			}
			prof.load(conns, 7*time.Second)
			done <- nil
		}()
		if err := saveProfile(adminPort, 5*time.Second, profileOut); err != nil {
			return err
		}
		<-done
	}

	var rss string
	if len(cookies) > 0 {
		if err := sweep(gated.url, cookies, conns); err != nil {
			return err
		}
		rss = fmt.Sprintf("Caddy with %d more live sessions, each read once through the gate: RSS %s (anonymous %s, file-backed %s: the binary and Badger's mapped tables), peak RSS %s\n",
			len(cookies), procStatus(caddyPID, "VmRSS"), procStatus(caddyPID, "RssAnon"), procStatus(caddyPID, "RssFile"), procStatus(caddyPID, "VmHWM"))
	}

	fmt.Printf("portalbench: %d rounds × %s per target, %d connections, storage %s, GOMAXPROCS %d, %s\n\n",
		rounds, d, conns, backend, runtime.GOMAXPROCS(0), time.Now().UTC().Format("2006-01-02"))
	fmt.Println("| target | requests/s | p50 | p99 | Caddy CPU per request | load generator CPU per request | errors |")
	fmt.Println("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, t := range all {
		fmt.Printf("| %s | %.0f | %s | %s | %s | %s | %d |\n", t.name, t.rate(), t.pct(0.50), t.pct(0.99),
			t.perRequest(t.caddyCPU), t.perRequest(t.ownCPU), t.errors.Load())
	}
	fmt.Println()
	for _, r := range []struct {
		what   string
		ratios []float64
		a, b   *target
	}{
		{"throughput ratio (gated / bare)", ratios, &gated, &bare},
		{"reference: bare + 4 headers / bare", refRatios, &headers, &bare},
		{"gated / bare + 4 headers", overRef, &gated, &headers},
		{"gated / forward_auth to a null auth server", overForward, &gated, &forward},
	} {
		fmt.Printf("%s: %.3f (median of %d rounds; middle half %.3f–%.3f; all requests together %.3f)\n", r.what,
			quantile(r.ratios, 0.5), len(r.ratios), quantile(r.ratios, 0.25), quantile(r.ratios, 0.75), r.a.rate()/r.b.rate())
	}
	fmt.Print(rss)
	for _, t := range all {
		if t.errors.Load() > 0 {
			return errors.New("some requests failed")
		}
	}
	return nil
}

// startNullAuth serves, on port, an auth server that does no work: every
// request is answered 200 with the four identity headers, as a forward-auth
// gateway that had already decided would answer.
func startNullAuth(port int) (func(), error) {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		h.Set("X-Portal-Contact-Id", "c-1")
		h.Set("X-Portal-Contact-Email", "bench@acme.example")
		h.Set("X-Portal-Contact-Name", "Bench")
		h.Set("X-Portal-Workspace", "bench")
		w.WriteHeader(http.StatusOK)
	})}
	go func() { _ = srv.Serve(l) }()
	return func() { _ = srv.Close() }, nil
}

type target struct {
	name, url, cookie string
	cookies           []string // if set, each request carries a random one of them instead of cookie
	mu                sync.Mutex
	lat               []time.Duration
	elapsed           time.Duration
	count             int64
	caddyCPU, ownCPU  time.Duration
	lastRate          float64 // requests per second in the latest load
	client            *http.Client
	errors            atomic.Int64
}

func (t *target) reset() {
	t.lat, t.elapsed, t.count = nil, 0, 0
	t.errors.Store(0)
}

// load drives t with conns keep-alive connections for d.
func (t *target) load(conns int, d time.Duration) error {
	if t.client == nil {
		// The connections stay open from round to round, so short rounds
		// measure requests, not handshakes.
		tr := &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns, DisableCompression: true}
		t.client = &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	client := t.client
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var wg sync.WaitGroup
	start := time.Now()
	caddyBefore, ownBefore := cpuTime(caddyPID), cpuTime(os.Getpid())
	before := int64(len(t.lat))
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat []time.Duration
			for ctx.Err() == nil {
				req, _ := http.NewRequest(http.MethodGet, t.url, nil)
				req.Header.Set("Accept", "text/html")
				if len(t.cookies) > 0 {
					req.Header.Set("Cookie", pick(t.cookies))
				} else if t.cookie != "" {
					req.Header.Set("Cookie", t.cookie)
				}
				s := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					if ctx.Err() == nil {
						t.errors.Add(1)
					}
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.errors.Add(1)
					continue
				}
				lat = append(lat, time.Since(s))
			}
			t.mu.Lock()
			t.lat = append(t.lat, lat...)
			t.count += int64(len(lat))
			t.mu.Unlock()
		}()
	}
	wg.Wait()
	caddyAfter, ownAfter := cpuTime(caddyPID), cpuTime(os.Getpid())
	t.mu.Lock()
	n := int64(len(t.lat)) - before
	t.lastRate = float64(n) / time.Since(start).Seconds()
	t.elapsed += time.Since(start)
	t.caddyCPU += caddyAfter - caddyBefore
	t.ownCPU += ownAfter - ownBefore
	t.mu.Unlock()
	return nil
}

// putSessions writes n live sessions for the bench contact into the Badger
// store at dir, as sign-ins would, and returns their cookies.
func putSessions(dir string, n int) ([]string, error) {
	store, err := badgerstore.Open(dir, badgerstore.Options{})
	if err != nil {
		return nil, err
	}
	defer store.Close()
	now := time.Now()
	cookies := make([]string, n)
	for i := range cookies {
		id := handlers.NewID()
		err := store.PutSession(context.Background(), storage.Session{IDHash: handlers.HashID(id), Workspace: "bench",
			ContactID: "c-1", Method: "code",
			CreatedAt: now, LastSeen: now, ExpiresAt: now.Add(12 * time.Hour), Idle: 12 * time.Hour})
		if err != nil {
			return nil, err
		}
		cookies[i] = "portal_session=" + id
	}
	return cookies, nil
}

// sweep sends one signed-in request per cookie to url.
func sweep(url string, cookies []string, conns int) error {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conns}}
	var next, failed atomic.Int64
	var wg sync.WaitGroup
	for range conns {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(len(cookies)); i = next.Add(1) - 1 {
				req, _ := http.NewRequest(http.MethodGet, url, nil)
				req.Header.Set("Accept", "text/html")
				req.Header.Set("Cookie", cookies[i])
				resp, err := client.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		return fmt.Errorf("%d of %d sessions were not let through", n, len(cookies))
	}
	return nil
}

// procStatus is one field of /proc/<pid>/status, like "VmRSS".
func procStatus(pid int, field string) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "?"
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			var kb int
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb)
			return fmt.Sprintf("%.0f MB", float64(kb)/1024)
		}
	}
	return "?"
}

// smtpDelay is the rush's SMTP round-trip time (-smtp-delay).
var smtpDelay time.Duration

// smtpConnections is the rush's SMTP connection pool (-smtp-connections);
// 0 leaves the default.
var smtpConnections int

// outboxWorkers is the rush's outbox_workers (-outbox-workers); 0 leaves
// the default.
var outboxWorkers int

// rushTimeline prints the rush's mail latency second by second (-timeline).
var rushTimeline bool

// badgerCompression is the Badger store's compression (-compression); ""
// leaves the store's default.
var badgerCompression = ""

// caddyPID is the Caddy process under test, for its CPU time.
var caddyPID int

// cpuTime is the user+system CPU time a process has used so far, from
// /proc/<pid>/stat (0 where that is not available).
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the parenthesised command name; utime and stime are the
	// 14th and 15th fields, in clock ticks (100 per second on Linux).
	_, rest, ok := strings.Cut(string(b), ") ")
	if !ok {
		return 0
	}
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0
	}
	var utime, stime int64
	fmt.Sscan(f[11], &utime)
	fmt.Sscan(f[12], &stime)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// machineCPU is the CPU time of the whole machine so far, from
// /proc/stat: busy (every process's, user and system) and stolen (time
// the hypervisor gave the virtual cores to another guest while they had
// work: on a shared host, the share of its speed this machine lost).
func machineCPU() (busy, stolen time.Duration) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	// cpu user nice system idle iowait irq softirq steal ...
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0
	}
	tick := func(i int) time.Duration {
		var v int64
		fmt.Sscan(f[i], &v)
		return time.Duration(v) * 10 * time.Millisecond
	}
	return tick(1) + tick(2) + tick(3) + tick(6) + tick(7), tick(8)
}

// quantile of sorted values, interpolated.
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	pos := q * float64(len(sorted)-1)
	i := int(pos)
	if i+1 >= len(sorted) {
		return sorted[i]
	}
	return sorted[i] + (pos-float64(i))*(sorted[i+1]-sorted[i])
}

func (t *target) rate() float64 { return float64(t.count) / t.elapsed.Seconds() }

func (t *target) perRequest(cpu time.Duration) string {
	if t.count == 0 || cpu == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f µs", float64(cpu.Microseconds())/float64(t.count))
}

func (t *target) pct(p float64) string {
	if len(t.lat) == 0 {
		return "-"
	}
	slices.Sort(t.lat)
	v := t.lat[int(float64(len(t.lat)-1)*p)]
	return fmt.Sprintf("%.0f µs", float64(v.Microseconds()))
}

// startCaddy runs the Caddy binary with the Caddyfile cfg, its files in
// dir, waits until every port listens and notes its pid for the CPU and
// memory readings; stop interrupts it and waits for it to exit.
// workplace makes a temporary directory (its name starting with prefix)
// and starts the SMTP server the benchmark reads codes from; done removes
// both.
func workplace(prefix string) (dir string, mail *e2e.Mailbox, smtpHost, smtpPort string, done func(), err error) {
	if dir, err = os.MkdirTemp("", prefix); err != nil {
		return "", nil, "", "", nil, err
	}
	if mail, err = e2e.StartMailbox(""); err != nil {
		_ = os.RemoveAll(dir)
		return "", nil, "", "", nil, err
	}
	smtpHost, smtpPort, _ = net.SplitHostPort(mail.Addr)
	return dir, mail, smtpHost, smtpPort, func() { _ = mail.Close(); _ = os.RemoveAll(dir) }, nil
}

// startRedis starts a redis-server on a free loopback port, without
// persistence, and returns its address.
func startRedis() (addr string, stop func(), err error) {
	port, err := e2e.FreePort()
	if err != nil {
		return "", nil, err
	}
	redis := exec.Command("redis-server", "--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	if err := redis.Start(); err != nil {
		return "", nil, fmt.Errorf("starting redis-server: %w", err)
	}
	stop = func() { _ = redis.Process.Kill(); _ = redis.Wait() }
	redisPID = redis.Process.Pid
	addr = fmt.Sprintf("127.0.0.1:%d", port)
	if err := e2e.WaitListening(addr, 10*time.Second); err != nil {
		stop()
		return "", nil, err
	}
	return addr, stop, nil
}

// redisPID is the last redis-server startRedis started.
var redisPID int

// redisInfo is a section of INFO from the redis-server at addr, as its
// "name:value" lines; nil when it cannot say.
func redisInfo(addr, section string) map[string]string {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return nil
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("INFO " + section + "\r\n")); err != nil {
		return nil
	}
	// A bulk string: "$<len>\r\n<info>\r\n".
	r := bufio.NewReader(c)
	head, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(head, "$") {
		return nil
	}
	n, err := strconv.Atoi(strings.TrimSpace(head[1:]))
	if err != nil {
		return nil
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil
	}
	out := map[string]string{}
	for _, line := range strings.Split(string(body), "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			out[k] = v
		}
	}
	return out
}

// redisCalls is how many times the redis-server at addr has run each
// command (INFO commandstats).
func redisCalls(addr string) map[string]int {
	out := map[string]int{}
	for k, v := range redisInfo(addr, "commandstats") {
		name, ok := strings.CutPrefix(k, "cmdstat_")
		calls, _, _ := strings.Cut(strings.TrimPrefix(v, "calls="), ",")
		if n, err := strconv.Atoi(calls); ok && err == nil {
			out[name] = n
		}
	}
	return out
}

func startCaddy(bin, dir, cfg string, within time.Duration, ports ...int) (stop func(), err error) {
	file := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	caddy := exec.Command(bin, "run", "--config", file, "--adapter", "caddyfile")
	caddy.Stdout, caddy.Stderr = os.Stderr, os.Stderr
	caddy.Env = append(os.Environ(), "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	if err := caddy.Start(); err != nil {
		return nil, fmt.Errorf("starting caddy: %w", err)
	}
	caddyPID = caddy.Process.Pid
	stop = func() { _ = caddy.Process.Signal(os.Interrupt); _ = caddy.Wait() }
	for _, p := range ports {
		if err := e2e.WaitListening(fmt.Sprintf("127.0.0.1:%d", p), within); err != nil {
			stop()
			return nil, err
		}
	}
	return stop, nil
}

// saveProfile writes a CPU profile of the Caddy whose admin endpoint is on
// port, taken over d, to path.
func saveProfile(port int, d time.Duration, path string) error {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/profile?seconds=%d", port, int(d.Seconds())))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("pprof: %s", resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
