package main

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kdesk/portalgate/integration/e2e"
)

// A sign-in rush: n distinct contacts sign in by emailed code, each
// through every page a browser sees (the portal page, the sign-in page,
// the email form, the code page, the code form), with c clients at once;
// the code is read from a real SMTP server this process runs. Reports full
// sign-ins per second, the p99 of every page, and the p99 from the email
// form's answer to the mail accepted by SMTP.

// rushPages are the steps of one sign-in, in order.
var rushPages = []string{"GET portal page (303)", "GET sign-in page", "POST email", "GET code page", "POST code"}

// With backend "redis" two Caddy instances share one redis-server, and
// each client sends its requests to them in turn, as a load balancer
// would. With rate > 0 sign-ins start at that rate (open loop), each on a
// free client; otherwise every client starts the next as soon as it is done.
func rush(caddyBin, backend string, n, clients int, rate float64) error {
	// The load generator shares the cores with what it measures: its
	// collector, a tenth of its CPU at the default, runs a quarter as often.
	debug.SetGCPercent(400)
	dir, mail, smtpHost, smtpPort, done, err := workplace("portalbench-rush-")
	if err != nil {
		return err
	}
	defer done()

	var cs []string
	for i := range n {
		cs = append(cs, fmt.Sprintf(`{"id":"r-%d","email":"r%d@acme.example","name":"Rush %d"}`, i, i, i))
	}
	contacts := filepath.Join(dir, "contacts.json")
	if err := os.WriteFile(contacts, []byte("["+strings.Join(cs, ",")+"]"), 0o600); err != nil {
		return err
	}
	instances, label := 1, "Badger"
	redisAddr := ""
	storage := func(int) string { return fmt.Sprintf("storage_dir %s/portal", dir) }
	switch backend {
	case "badger":
		if badgerCompression != "" {
			label += ", compression " + badgerCompression
			storage = func(int) string {
				return fmt.Sprintf("storage badger {\n\t\t\tdir %s/portal\n\t\t\tcompression %s\n\t\t}", dir, badgerCompression)
			}
		}
	case "redis":
		addr, stop, err := startRedis()
		if err != nil {
			return err
		}
		defer stop()
		redisAddr = addr
		instances, label = 2, "2 instances sharing Redis"
		storage = func(int) string { return "storage redis {\n\t\t\taddress " + addr + "\n\t\t}" }
	default:
		return fmt.Errorf("unknown -storage %q", backend)
	}
	if smtpDelay > 0 {
		mail.Delay(smtpDelay)
		label += fmt.Sprintf(", a relay %s away", smtpDelay)
	}
	pool := ""
	if smtpConnections > 0 {
		pool = fmt.Sprintf("\n\t\t\tconnections %d", smtpConnections)
		label += fmt.Sprintf(", %d SMTP connections", smtpConnections)
	}
	workers := ""
	if outboxWorkers > 0 {
		workers = fmt.Sprintf("\n\t\toutbox_workers %d", outboxWorkers)
		label += fmt.Sprintf(", %d outbox workers", outboxWorkers)
	}
	upPort, err := e2e.FreePort()
	if err != nil {
		return err
	}
	var bases []string
	var firstAdmin int
	var pids []int
	for i := range instances {
		var ports [2]int
		for j := range ports {
			if ports[j], err = e2e.FreePort(); err != nil {
				return err
			}
		}
		adminPort, gatedPort := ports[0], ports[1]
		if i == 0 {
			firstAdmin = adminPort
		}
		// Every instance's url is the first one's: links and cookies
		// name one site, as behind a load balancer.
		bases = append(bases, fmt.Sprintf("http://127.0.0.1:%d", gatedPort))
		upstream := ""
		if i == 0 {
			upstream = fmt.Sprintf("\nhttp://127.0.0.1:%d {\n\trespond \"ok\" 200\n}\n", upPort)
		}
		cfg := fmt.Sprintf(`{
	admin 127.0.0.1:%d
	persist_config off
	auto_https off
	storage file_system %s/caddy%d
	log {
		level ERROR
	}
	portal {
		%s
		mail smtp {
			host %s
			port %s
			from bench@acme.example
			tls none%s
		}%s
		limits {
			requests_per_ip 1000000
			sends_per_ip 1000000
			sends_per_workspace 1000000
			tries_per_ip 1000000
		}
		workspace bench {
			title Bench
			url %s
			contacts_file %s
		}
	}
}

http://127.0.0.1:%d {
	portal_auth bench
	reverse_proxy 127.0.0.1:%d
}
%s`, adminPort, dir, i, storage(i), smtpHost, smtpPort, pool, workers, bases[0], contacts, gatedPort, upPort, upstream)
		sub := filepath.Join(dir, fmt.Sprint(i))
		if err := os.MkdirAll(sub, 0o700); err != nil {
			return err
		}
		wait := []int{gatedPort}
		if i == 0 {
			wait = append(wait, upPort)
		}
		stopCaddy, err := startCaddy(caddyBin, sub, cfg, 60*time.Second, wait...)
		if err != nil {
			return err
		}
		defer stopCaddy()
		pids = append(pids, caddyPID)
	}
	base := bases[0]

	// Mail is routed to the sign-in that waits for its address.
	inbox := routeMail(mail)
	defer inbox.stop()

	var (
		failures atomic.Int64
		firstErr atomic.Value
		lat      = make([][]float64, len(rushPages))
		mailLat  []float64
		// mailAt is each mail's latency by the second of the rush its
		// code was asked for in.
		mailAt = map[int][]float64{}
		start  time.Time
		latMu  sync.Mutex
		wg     sync.WaitGroup
	)
	record := func(step int, d time.Duration) {
		latMu.Lock()
		lat[step] = append(lat[step], float64(d)/float64(time.Millisecond))
		latMu.Unlock()
	}
	// One shared transport: clients keep their connections, as browsers do.
	transport := &http.Transport{MaxIdleConnsPerHost: clients * 2}
	signIn := func(i int) error {
		// Behind a load balancer: each request goes to the next instance.
		first := e2e.NewClient(base, e2e.Options{Timeout: 30 * time.Second, Transport: transport})
		via := []*e2e.Client{first}
		for _, b := range bases[1:] {
			via = append(via, first.On(b))
		}
		turn := i
		at := func() *e2e.Client {
			turn++
			return via[turn%len(via)]
		}
		email := fmt.Sprintf("r%d@acme.example", i)
		wanted := fmt.Sprintf("/tickets/%d", i)
		t0 := time.Now()
		r, err := at().Get(wanted)
		if err != nil || r.Status != http.StatusSeeOther {
			return fmt.Errorf("portal page: %v %d", err, r.Status)
		}
		record(0, time.Since(t0))
		t0 = time.Now()
		r, err = at().Get("/_portal/signin")
		if err != nil || r.Status != http.StatusOK {
			return fmt.Errorf("sign-in page: %v %d", err, r.Status)
		}
		record(1, time.Since(t0))
		csrf, err := e2e.CSRF(r.Body)
		if err != nil {
			return err
		}
		t0 = time.Now()
		r, err = at().Post("/_portal/signin", url.Values{"csrf": {csrf}, "email": {email}})
		if err != nil || r.Status != http.StatusSeeOther {
			return fmt.Errorf("email: %v %d", err, r.Status)
		}
		asked := time.Now()
		record(2, asked.Sub(t0))
		t0 = time.Now()
		r, err = at().Get("/_portal/code")
		if err != nil || r.Status != http.StatusOK {
			return fmt.Errorf("code page: %v %d", err, r.Status)
		}
		record(3, time.Since(t0))
		if csrf, err = e2e.CSRF(r.Body); err != nil {
			return err
		}
		var m e2e.Mail
		select {
		case m = <-inbox.For(email):
		case <-time.After(30 * time.Second):
			return fmt.Errorf("no mail for %s", email)
		}
		latMu.Lock()
		mailLat = append(mailLat, float64(time.Since(asked))/float64(time.Millisecond))
		sec := int(asked.Sub(start) / time.Second)
		mailAt[sec] = append(mailAt[sec], mailLat[len(mailLat)-1])
		latMu.Unlock()
		t0 = time.Now()
		r, err = at().EnterCode(csrf, m.Code())
		if err != nil || r.Status != http.StatusSeeOther || r.Location != wanted {
			return fmt.Errorf("code: %v %d %q", err, r.Status, r.Location)
		}
		record(4, time.Since(t0))
		return nil
	}
	// Open loop: a sign-in starts every 1/rate on a free client; one that
	// finds every client busy starts late, and is counted.
	starts := make(chan int)
	var late atomic.Int64
	go func() {
		defer close(starts)
		if rate <= 0 {
			for i := range n {
				starts <- i
			}
			return
		}
		every := time.Duration(float64(time.Second) / rate)
		t0 := time.Now()
		for i := range n {
			due := t0.Add(time.Duration(i) * every)
			if d := time.Until(due); d > 0 {
				time.Sleep(d)
			}
			select {
			case starts <- i:
			default:
				late.Add(1)
				starts <- i
			}
		}
	}()
	// With -cpuprofile: the first instance, from 2 s into the rush.
	profiled := make(chan error, 1)
	if profileOut != "" {
		go func() {
			time.Sleep(2 * time.Second)
			profiled <- saveProfile(firstAdmin, 5*time.Second, profileOut)
		}()
	} else {
		profiled <- nil
	}
	caddyCPU := func() (sum time.Duration) {
		for _, pid := range pids {
			sum += cpuTime(pid)
		}
		return sum
	}
	caddyBefore, ownBefore := caddyCPU(), cpuTime(os.Getpid())
	busyBefore, stolenBefore := machineCPU()
	var redisBefore time.Duration
	var callsBefore map[string]int
	if redisAddr != "" {
		redisBefore, callsBefore = cpuTime(redisPID), redisCalls(redisAddr)
	}
	start = time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range starts {
				if err := signIn(i); err != nil {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	caddySpent, ownSpent := caddyCPU()-caddyBefore, cpuTime(os.Getpid())-ownBefore
	busy, stolen := machineCPU()
	busy, stolen = busy-busyBefore, stolen-stolenBefore
	redisSpent, calls := time.Duration(0), map[string]int{}
	if redisAddr != "" {
		redisSpent = cpuTime(redisPID) - redisBefore
		for name, c := range redisCalls(redisAddr) {
			if d := c - callsBefore[name]; d > 0 {
				calls[name] = d
			}
		}
	}
	if err := <-profiled; err != nil {
		return fmt.Errorf("cpu profile: %w", err)
	}
	if f := failures.Load(); f > 0 {
		return fmt.Errorf("%d of %d sign-ins failed; first: %v", f, n, firstErr.Load())
	}
	how := "as fast as they can"
	if rate > 0 {
		how = fmt.Sprintf("started at %.0f per second (%d found every client busy)", rate, late.Load())
	}
	fmt.Printf("sign-in rush: %d distinct contacts, %d clients %s, %s: %d full sign-ins in %s = %.0f per second\n",
		n, clients, how, label, n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds())
	// CPU time per sign-in moves much less with the machine's other load
	// than the rate does, and Caddy's over this process's, whose work is
	// the same for every build, less still (the machine's speed of the
	// moment slows both): compare builds by that ratio.
	fmt.Printf("  CPU per full sign-in: Caddy %.2f ms (all instances), this process (clients and SMTP server) %.2f ms; Caddy / this process %.3f\n",
		float64(caddySpent)/float64(time.Millisecond)/float64(n), float64(ownSpent)/float64(time.Millisecond)/float64(n), float64(caddySpent)/float64(ownSpent))
	// A closed loop cannot run faster than the machine's cores divided
	// by the CPU every process spends on one sign-in.
	perSignIn := caddySpent + ownSpent + redisSpent
	fmt.Printf("  CPU budget: %d cores / %.2f ms of CPU per sign-in (all processes) = at most %.0f full sign-ins per second; the rush used %.0f%% of it\n",
		runtime.NumCPU(), float64(perSignIn)/float64(time.Millisecond)/float64(n),
		float64(runtime.NumCPU())*float64(n)/perSignIn.Seconds(), 100*perSignIn.Seconds()/(float64(runtime.NumCPU())*elapsed.Seconds()))
	// The rest of the cores' time: other processes, and what the host
	// took (steal). A run whose cores were partly taken is slower, and its
	// tails longer, for reasons outside what it measures.
	cores := float64(runtime.NumCPU()) * elapsed.Seconds()
	fmt.Printf("  the machine: other processes %.0f%% of the cores, taken by the host (steal) %.0f%%\n",
		100*max(0, (busy-perSignIn).Seconds())/cores, 100*stolen.Seconds()/cores)
	// What the gateway alone costs (Caddy, and redis-server when there is
	// one), as if the clients and the SMTP server ran elsewhere: computed
	// from the CPU measured, not a throughput measured.
	gateway := caddySpent + redisSpent
	fmt.Printf("  without this process: %d cores / %.2f ms of CPU per sign-in (Caddy and redis-server) = at most %.0f full sign-ins per second (computed, not measured)\n",
		runtime.NumCPU(), float64(gateway)/float64(time.Millisecond)/float64(n), float64(runtime.NumCPU())*float64(n)/gateway.Seconds())
	if redisAddr != "" {
		names, total := slices.Collect(maps.Keys(calls)), 0
		slices.SortFunc(names, func(a, b string) int { return calls[b] - calls[a] })
		var top []string
		for i, name := range names {
			total += calls[name]
			if i < 8 {
				top = append(top, fmt.Sprintf("%s %.1f", name, float64(calls[name])/float64(n)))
			}
		}
		fmt.Printf("  redis-server: CPU %.2f ms and %.1f commands per full sign-in, both instances together (%s)\n",
			float64(redisSpent)/float64(time.Millisecond)/float64(n), float64(total)/float64(n), strings.Join(top, ", "))
	}
	for i, name := range rushPages {
		slices.Sort(lat[i])
		fmt.Printf("  %-24s p50 %6.2f ms  p99 %6.2f ms\n", name, quantile(lat[i], 0.5), quantile(lat[i], 0.99))
	}
	if rushTimeline {
		for sec := 0; sec <= int(elapsed/time.Second); sec++ {
			if l := mailAt[sec]; len(l) > 0 {
				slices.Sort(l)
				fmt.Printf("    second %2d: %4d codes asked for, mail p50 %6.1f ms  p99 %6.1f ms  max %6.1f ms\n", sec, len(l), quantile(l, 0.5), quantile(l, 0.99), l[len(l)-1])
			}
		}
	}
	slices.Sort(mailLat)
	fmt.Printf("  %-24s p50 %6.2f ms  p99 %6.2f ms\n", "email form → mail at SMTP", quantile(mailLat, 0.5), quantile(mailLat, 0.99))
	if len(mailLat) != n {
		return errors.New("some mail went missing")
	}
	return nil
}
