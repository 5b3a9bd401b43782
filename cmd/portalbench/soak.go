package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/template"
	"time"

	"github.com/kdesk/portalgate/integration/e2e"
)

// A soak: for a long while, a few clients sign in continuously (each
// sign-in a new browser, so a new session, with the code from a real SMTP
// server), and more clients send signed-in GETs through the gate. Every
// interval it samples Caddy's RSS (/proc), its goroutines (go_goroutines
// on the admin endpoint's /metrics) and the size of the store's
// directory, and writes them as soak.csv and a plot, soak.svg.

// soakOptions tune a soak.
type soakOptions struct {
	duration, every time.Duration
	out             string
	signInClients   int
	signInRate      float64 // full sign-ins per second, all clients together
	getClients      int
	getRate         float64 // signed-in GETs per second, all clients together
}

// soakSample is one reading.
type soakSample struct {
	Elapsed time.Duration
	// RSSMB is Caddy's resident memory; AnonMB and FileMB split it into
	// anonymous memory (the Go heap and runtime) and file-backed pages
	// (the binary, Badger's memory-mapped tables).
	RSSMB, AnonMB, FileMB float64
	// HeapMB is the Go heap in use (go_memstats_heap_inuse_bytes).
	HeapMB     float64
	Goroutines int
	StoreMB    float64
	SignIns    int64
	Requests   int64
	Errors     int64
}

func soak(caddyBin string, o soakOptions) error {
	dir, mail, smtpHost, smtpPort, done, err := workplace("portalbench-soak-")
	if err != nil {
		return err
	}
	defer done()

	// Enough contacts that none comes round again within its resend
	// cooldown.
	n := max(1000, int(o.signInRate*120))
	var cs []string
	for i := range n {
		cs = append(cs, fmt.Sprintf(`{"id":"s-%d","email":"s%d@acme.example","name":"Soak %d"}`, i, i, i))
	}
	contacts := filepath.Join(dir, "contacts.json")
	if err := os.WriteFile(contacts, []byte("["+strings.Join(cs, ",")+"]"), 0o600); err != nil {
		return err
	}
	var ports [3]int
	for i := range ports {
		if ports[i], err = e2e.FreePort(); err != nil {
			return err
		}
	}
	adminPort, gatedPort, upPort := ports[0], ports[1], ports[2]
	storeDir := filepath.Join(dir, "portal")
	cfg := fmt.Sprintf(`{
	admin 127.0.0.1:%d
	persist_config off
	auto_https off
	storage file_system %s/caddy
	log {
		level ERROR
	}
	portal {
		storage_dir %s
		mail smtp {
			host %s
			port %s
			from bench@acme.example
			tls none
		}
		limits {
			requests_per_ip 1000000
			sends_per_ip 1000000
			sends_per_workspace 1000000
			tries_per_ip 1000000
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
	respond "ok" 200
}
`, adminPort, dir, storeDir, smtpHost, smtpPort, gatedPort, contacts, gatedPort, upPort, upPort)
	stopCaddy, err := startCaddy(caddyBin, dir, cfg, 30*time.Second, gatedPort, upPort)
	if err != nil {
		return err
	}
	defer stopCaddy()
	base := fmt.Sprintf("http://127.0.0.1:%d", gatedPort)
	inbox := routeMail(mail)
	defer inbox.stop()

	transport := &http.Transport{MaxIdleConnsPerHost: 2 * (o.signInClients + o.getClients)}
	var nextContact atomic.Int64
	signIn := func(wanted string) (*e2e.Client, error) {
		c := e2e.NewClient(base, e2e.Options{Timeout: 30 * time.Second, Transport: transport})
		email := fmt.Sprintf("s%d@acme.example", nextContact.Add(1)%int64(n))
		r, err := c.Get(wanted)
		if err != nil || r.Status != http.StatusSeeOther {
			return nil, fmt.Errorf("portal page: %v %d", err, r.Status)
		}
		csrf, err := c.SubmitEmail(email)
		if err != nil {
			return nil, err
		}
		var m e2e.Mail
		select {
		case m = <-inbox.For(email):
		case <-time.After(30 * time.Second):
			return nil, fmt.Errorf("no mail for %s", email)
		}
		if r, err = c.EnterCode(csrf, m.Code()); err != nil || r.Status != http.StatusSeeOther || r.Location != wanted {
			return nil, fmt.Errorf("code: %v %d %q", err, r.Status, r.Location)
		}
		return c, nil
	}

	ctx, cancel := context.WithTimeout(context.Background(), o.duration)
	defer cancel()
	var signIns, requests, failures atomic.Int64
	var firstErr atomic.Value
	fail := func(err error) {
		failures.Add(1)
		firstErr.CompareAndSwap(nil, err)
	}
	// pace runs f about rate times a second across clients goroutines.
	var wg sync.WaitGroup
	pace := func(clients int, rate float64, f func(client int)) {
		gap := time.Duration(float64(time.Second) * float64(clients) / rate)
		for i := range clients {
			wg.Go(func() {
				t := time.NewTicker(gap)
				defer t.Stop()
				for {
					select {
					case <-ctx.Done():
						return
					case <-t.C:
						f(i)
					}
				}
			})
		}
	}
	pace(o.signInClients, o.signInRate, func(int) {
		if _, err := signIn("/tickets/soak"); err != nil {
			fail(err)
			return
		}
		signIns.Add(1)
	})
	getters := make([]*e2e.Client, o.getClients)
	for i := range getters {
		if getters[i], err = signIn(fmt.Sprintf("/tickets/%d", i)); err != nil {
			return fmt.Errorf("signing in a reader: %w", err)
		}
	}
	pace(o.getClients, o.getRate, func(i int) {
		r, err := getters[i].Get(fmt.Sprintf("/tickets/%d", i))
		if err != nil || r.Status != http.StatusOK {
			fail(fmt.Errorf("signed-in GET: %v %d", err, r.Status))
			return
		}
		requests.Add(1)
	})

	var samples []soakSample
	start := time.Now()
	sample := func() {
		m := metrics(adminPort, "go_goroutines", "go_memstats_heap_inuse_bytes")
		s := soakSample{Elapsed: time.Since(start), RSSMB: procKB(caddyPID, "VmRSS") / 1024,
			AnonMB: procKB(caddyPID, "RssAnon") / 1024, FileMB: procKB(caddyPID, "RssFile") / 1024,
			HeapMB: m[1] / (1 << 20), Goroutines: int(m[0]), StoreMB: float64(dirSize(storeDir)) / (1 << 20),
			SignIns: signIns.Load(), Requests: requests.Load(), Errors: failures.Load()}
		samples = append(samples, s)
		fmt.Printf("soak %6s  RSS %6.1f MB (anon %5.1f, file %5.1f, heap %5.1f)  goroutines %4d  store %7.1f MB  sign-ins %7d  GETs %8d  errors %d\n",
			s.Elapsed.Round(time.Second), s.RSSMB, s.AnonMB, s.FileMB, s.HeapMB, s.Goroutines, s.StoreMB, s.SignIns, s.Requests, s.Errors)
	}
	fmt.Printf("soak: Caddy's admin endpoint (metrics, pprof) on 127.0.0.1:%d\n", adminPort)
	sample()
	tick := time.NewTicker(o.every)
	for loop := true; loop; {
		select {
		case <-tick.C:
			sample()
		case <-ctx.Done():
			loop = false
		}
	}
	tick.Stop()
	wg.Wait()
	sample()
	if err := writeSoak(o.out, samples, o); err != nil {
		return err
	}
	if f := failures.Load(); f > 0 {
		return fmt.Errorf("%d requests or sign-ins failed; first: %v", f, firstErr.Load())
	}
	return nil
}

// mailRouter hands each message the Mailbox receives to the sign-in
// waiting for its address.
type mailRouter struct {
	mu      sync.Mutex
	waiting map[string]chan e2e.Mail
	done    chan struct{}
}

func routeMail(mb *e2e.Mailbox) *mailRouter {
	r := &mailRouter{waiting: map[string]chan e2e.Mail{}, done: make(chan struct{})}
	go func() {
		for {
			select {
			case <-r.done:
				return
			default:
			}
			if m, err := mb.Wait(200 * time.Millisecond); err == nil && len(m.To) == 1 {
				r.For(m.To[0]) <- m
			}
		}
	}()
	return r
}

// For is where the next message to email arrives.
func (r *mailRouter) For(email string) chan e2e.Mail {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.waiting[email] == nil {
		r.waiting[email] = make(chan e2e.Mail, 1)
	}
	return r.waiting[email]
}

func (r *mailRouter) stop() { close(r.done) }

// procKB is a kB field of /proc/<pid>/status, like "VmRSS" (0 if absent).
func procKB(pid int, field string) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb
		}
	}
	return 0
}

// metrics reads gauges from Caddy's admin /metrics, in the order named
// (-1 for one it cannot read).
func metrics(adminPort int, names ...string) []float64 {
	out := make([]float64, len(names))
	for i := range out {
		out[i] = -1
	}
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", adminPort))
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		for i, n := range names {
			if v, ok := strings.CutPrefix(sc.Text(), n+" "); ok {
				out[i], _ = strconv.ParseFloat(v, 64)
			}
		}
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return out
}

// dirSize is the disk space the regular files under dir take, as du
// counts it: Badger's value-log files are sparse until written.
func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				if st, ok := fi.Sys().(*syscall.Stat_t); ok {
					n += st.Blocks * 512
				} else {
					n += fi.Size()
				}
			}
		}
		return nil
	})
	return n
}

// writeSoak writes dir/soak.csv and dir/soak.svg.
func writeSoak(dir string, samples []soakSample, o soakOptions) error {
	if len(samples) == 0 {
		return errors.New("no samples")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var csv strings.Builder
	csv.WriteString("elapsed_s,rss_mb,rss_anon_mb,rss_file_mb,heap_inuse_mb,goroutines,store_mb,sign_ins,signed_in_gets,errors\n")
	for _, s := range samples {
		fmt.Fprintf(&csv, "%.0f,%.1f,%.1f,%.1f,%.1f,%d,%.1f,%d,%d,%d\n", s.Elapsed.Seconds(), s.RSSMB, s.AnonMB, s.FileMB, s.HeapMB,
			s.Goroutines, s.StoreMB, s.SignIns, s.Requests, s.Errors)
	}
	if err := os.WriteFile(filepath.Join(dir, "soak.csv"), []byte(csv.String()), 0o644); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, "soak.svg"))
	if err != nil {
		return err
	}
	last := samples[len(samples)-1]
	title := fmt.Sprintf("portalbench -soak %s, Badger: %g sign-ins/s + %g signed-in GETs/s: %d sign-ins, %d GETs, %d errors",
		o.duration, o.signInRate, o.getRate, last.SignIns, last.Requests, last.Errors)
	err = soakPlot.Execute(f, plotData(title, samples))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// panel is one box of the plot, its lines drawn from zero to a rounded
// top.
type panel struct {
	Name, Top, Last string
	Lines           []line
	Y               int
}

type line struct{ Points, Color, Name string }

type plot struct {
	Title, Span string
	Panels      []panel
	W, H, PW    int
}

const (
	plotW, panelH, plotLeft, plotRight = 760, 110, 60, 20
)

// series is one line: its name and its value in a sample.
type series struct {
	name string
	v    func(soakSample) float64
}

func plotData(title string, samples []soakSample) plot {
	panels := []struct {
		name, unit string
		lines      []series
	}{
		{"Caddy memory", "MB", []series{
			{"RSS", func(s soakSample) float64 { return s.RSSMB }},
			{"anonymous", func(s soakSample) float64 { return s.AnonMB }},
			{"file-backed", func(s soakSample) float64 { return s.FileMB }},
			{"Go heap in use", func(s soakSample) float64 { return s.HeapMB }},
		}},
		{"goroutines", "", []series{{"goroutines", func(s soakSample) float64 { return float64(s.Goroutines) }}}},
		{"store directory", "MB", []series{{"on disk", func(s soakSample) float64 { return s.StoreMB }}}},
	}
	colors := []string{"#1f6feb", "#d97706", "#059669", "#9333ea"}
	span := samples[len(samples)-1].Elapsed.Seconds()
	if span <= 0 {
		span = 1
	}
	pw := plotW - plotLeft - plotRight
	p := plot{Title: title, Span: fmt.Sprintf("%.0f min", span/60), W: plotW, PW: pw}
	if span < 120 {
		p.Span = fmt.Sprintf("%.0f s", span)
	}
	for i, pn := range panels {
		top := 0.0
		for _, l := range pn.lines {
			for _, x := range samples {
				top = max(top, l.v(x))
			}
		}
		top = niceTop(top)
		y0 := 30 + i*(panelH+20)
		pl := panel{Name: pn.name, Y: y0, Top: strings.TrimSpace(fmt.Sprintf("%g %s", top, pn.unit))}
		var last []string
		for j, l := range pn.lines {
			var pts strings.Builder
			for _, x := range samples {
				fmt.Fprintf(&pts, "%.1f,%.1f ", float64(plotLeft)+x.Elapsed.Seconds()/span*float64(pw),
					float64(y0+panelH)-l.v(x)/top*float64(panelH))
			}
			v := fmt.Sprintf("%.0f", l.v(samples[len(samples)-1]))
			pl.Lines = append(pl.Lines, line{Points: pts.String(), Color: colors[j%len(colors)], Name: l.name + " " + v})
			last = append(last, v)
		}
		pl.Last = strings.TrimSpace("last " + strings.Join(last, ", ") + " " + pn.unit)
		p.Panels = append(p.Panels, pl)
	}
	p.H = 30 + len(panels)*(panelH+20) + 16
	return p
}

// niceTop rounds v up to 1, 2 or 5 times a power of ten.
func niceTop(v float64) float64 {
	if v <= 0 {
		return 1
	}
	m := 1.0
	for m*10 <= v {
		m *= 10
	}
	for _, f := range []float64{1, 2, 5, 10} {
		if f*m >= v {
			return f * m
		}
	}
	return 10 * m
}

var soakPlot = template.Must(template.New("soak").Parse(`<svg xmlns="http://www.w3.org/2000/svg" width="{{.W}}" height="{{.H}}" viewBox="0 0 {{.W}} {{.H}}" font-family="sans-serif" font-size="11">
<rect width="100%" height="100%" fill="#fff"/>
<text x="8" y="16" font-size="11">{{.Title}}</text>
{{range .Panels}}<g>
<rect x="60" y="{{.Y}}" width="{{$.PW}}" height="110" fill="none" stroke="#999"/>
<text x="56" y="{{.Y}}" dy="4" text-anchor="end">{{.Top}}</text>
<text x="56" y="{{.Y}}" dy="110" text-anchor="end">0</text>
<text x="64" y="{{.Y}}" dy="14" fill="#333">{{.Name}}{{if gt (len .Lines) 1}} (MB, last):{{range .Lines}} <tspan fill="{{.Color}}">■ {{.Name}}</tspan>{{end}}{{else}} ({{.Last}}){{end}}</text>
{{range .Lines}}<polyline fill="none" stroke="{{.Color}}" stroke-width="1.5" points="{{.Points}}"><title>{{.Name}}</title></polyline>
{{end}}
<text x="{{$.W}}" y="{{.Y}}" dx="-20" dy="122" text-anchor="end" fill="#666">{{$.Span}}</text>
</g>
{{end}}</svg>
`))
