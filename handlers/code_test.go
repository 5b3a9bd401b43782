package handlers

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kdesk/portalgate/mail"
	"github.com/kdesk/portalgate/storage"
)

// TestNewCode checks that 10,000 codes are all well formed and that their
// characters are spread evenly, over all positions and at each position.
// The chi-square bounds are far out in the tail (df = 30, mean 30, sd
// about 7.7): a fair generator exceeds them about once in 10^15 runs, a
// generator that skips or favours even one character never passes.
func TestNewCode(t *testing.T) {
	const n = 10000
	k := len(codeAlphabet)
	var total [256]int
	var byPos [CodeLength][256]int
	for range n {
		c := NewCode()
		if got, ok := NormalizeCode(c); !ok || got != c {
			t.Fatalf("NewCode() = %q; NormalizeCode gives %q, %v", c, got, ok)
		}
		for i := 0; i < len(c); i++ {
			total[c[i]]++
			byPos[i][c[i]]++
		}
	}
	chi2 := func(counts *[256]int, samples int) float64 {
		want := float64(samples) / float64(k)
		x := 0.0
		for i := 0; i < k; i++ {
			d := float64(counts[codeAlphabet[i]]) - want
			x += d * d / want
		}
		return x
	}
	if x := chi2(&total, n*CodeLength); x > 150 {
		t.Errorf("chi-square over all characters = %.1f, want <= 150; counts %v", x, total)
	}
	for i := range byPos {
		if x := chi2(&byPos[i], n); x > 150 {
			t.Errorf("chi-square at position %d = %.1f, want <= 150", i, x)
		}
	}
}

// TestNormalizeCode pins down the forms a typed code may take.
func TestNormalizeCode(t *testing.T) {
	for _, tc := range []struct {
		in, want string
	}{
		{"ABC-DEFG", "ABCDEFG"},
		{"abc-defg", "ABCDEFG"},
		{" abc defg ", "ABCDEFG"},
		{"a-b-c-d-e-f-g", "ABCDEFG"},
		{"ABC\tDEFG", "ABCDEFG"},
		{"ABC\u00a0DEFG", "ABCDEFG"},
		{"2345678", "2345678"},
	} {
		if got, ok := NormalizeCode(tc.in); !ok || got != tc.want {
			t.Errorf("NormalizeCode(%q) = %q, %v; want %q", tc.in, got, ok, tc.want)
		}
	}
	for _, in := range []string{
		"", "ABCDEF", "ABCDEFGH", "ABC-DEF0", "ABCDEFO", "ABCDEF1", "ABCDEFI", "ABCDEFL",
		"abcdefl", "abcdefi", "abcdefo", "ABC_DEFG", "ABC.DEFG", "ＡBCDEFG", "ABCDEF\u212a",
		"ABCDEF\x00", strings.Repeat(" ", 60) + "ABCDEFG",
	} {
		if got, ok := NormalizeCode(in); ok {
			t.Errorf("NormalizeCode(%q) = %q, true; want refused", in, got)
		}
	}
}

// FuzzNormalizeCode checks, for any input, what an accepted code promises.
func FuzzNormalizeCode(f *testing.F) {
	for range 5 {
		c := NewCode()
		f.Add(c)
		f.Add(FormatCode(c))
		f.Add(strings.ToLower(FormatCode(c)))
	}
	for _, s := range []string{"", "ABC DEFG", "a-b-c-d-e-f-g", "ABCDEF0", "ABCDEFGH", "ABC\u00a0DEFG", "\tabc\tdefg\t",
		"ÀBCDEFG", "ABCDEF\u212a", "ABCDEF\xff", strings.Repeat("-", 57) + "ABCDEFG"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		c, ok := NormalizeCode(in)
		if !ok {
			if c != "" {
				t.Fatalf("NormalizeCode(%q) refused but returned %q", in, c)
			}
			return
		}
		if len(c) != CodeLength {
			t.Fatalf("NormalizeCode(%q) = %q: %d characters", in, c, len(c))
		}
		for i := 0; i < len(c); i++ {
			if strings.IndexByte(codeAlphabet, c[i]) < 0 {
				t.Fatalf("NormalizeCode(%q) = %q: %q is not in the alphabet", in, c, c[i])
			}
		}
		// What was typed is the code, give or take case and separators.
		stripped := strings.NewReplacer(" ", "", "-", "", "\t", "", "\u00a0", "").Replace(in)
		if strings.ToUpper(stripped) != c {
			t.Fatalf("NormalizeCode(%q) = %q, but the input holds %q", in, c, stripped)
		}
		spaced := strings.Join(strings.Split(c, ""), " ")
		for _, v := range []string{
			c,
			FormatCode(c),
			strings.ToLower(c),
			strings.ToLower(FormatCode(c)),
			spaced,
			strings.ToLower(spaced),
			strings.Join(strings.Split(c, ""), "-"),
			" " + c[:3] + " - " + c[3:] + " ",
			"\t" + strings.ToLower(c[:2]) + "\u00a0" + c[2:],
		} {
			if got, ok := NormalizeCode(v); !ok || got != c {
				t.Fatalf("NormalizeCode(%q) = %q, %v; want %q (from %q)", v, got, ok, c, in)
			}
		}
	})
}

// TestWrongCodesInAnotherFlowSpareTheContactsCode (issue 13): an attacker
// in another browser, from another network, asks a code for jane and types
// wrong codes until their flow's code dies; jane's code, in her own flow,
// still signs her in.
func TestWrongCodesInAnotherFlowSpareTheContactsCode(t *testing.T) {
	tp := newTestPortal(t, nil)
	jb := tp.browser(t, tp.acme)
	janeToken := jb.requestCode("/tickets/7", jane.Email)
	janeCode := mailCode(t, tp.waitMail(t, 1))

	// Past the resend cooldown, so the attacker's flow gets a code of its own.
	tp.clock.Advance(31 * time.Second)
	ab := tp.browser(t, tp.acme)
	ab.ip = "203.0.113.66"
	attackerToken := ab.requestCode("/", jane.Email)
	attackerCode := mailCode(t, tp.waitMail(t, 2))
	wrong := "ABC-2345"
	if wrong == janeCode || wrong == attackerCode {
		wrong = "XYZ-6789"
	}
	for i := range MaxCodeTries {
		res := ab.submitCode(attackerToken, wrong)
		wantStatus(t, fmt.Sprintf("attacker's wrong code %d", i+1), res, http.StatusUnauthorized)
	}
	res := ab.submitCode(attackerToken, attackerCode)
	wantBody(t, "attacker's dead code", res, "no longer works")

	wantRedirect(t, "jane's own code", jb.submitCode(janeToken, janeCode), "/tickets/7")
}

// TestRedeliveryMailsTheSameCode (issue 18): the outbox delivers at least
// once, so a message sent again after a crash (its first delivery mailed,
// but not acknowledged) must carry the code of the first mail, which still
// signs in.
func TestRedeliveryMailsTheSameCode(t *testing.T) {
	tp := newTestPortal(t, nil)
	b := tp.browser(t, tp.acme)
	token := b.requestCode("/tickets/9", jane.Email)
	first := mailCode(t, tp.waitMail(t, 1))
	tp.settle(t)

	// The same message, as the worker would claim it twice.
	job, err := json.Marshal(codeJob{Workspace: "acme", Email: jane.Email, FlowHash: HashID(b.cookie(cookieFlow)), Method: "code", ClientIP: b.ip})
	if err != nil {
		t.Fatal(err)
	}
	m := storage.OutboxMessage{ID: storage.SortableID(tp.clock.Now()), Kind: kindCode, Payload: job, CreatedAt: tp.clock.Now()}
	ctx := context.Background()
	var codes []string
	for attempt := 1; attempt <= 2; attempt++ {
		m.Attempts = attempt
		if _, err := tp.portal.deliver(ctx, m); err != nil {
			t.Fatalf("delivery %d: %v", attempt, err)
		}
		codes = append(codes, mailCode(t, tp.waitMail(t, 1+attempt)))
		tp.clock.Advance(time.Second)
	}
	if codes[0] != codes[1] {
		t.Fatalf("a redelivery mailed %s after %s: the first mail's code was replaced", codes[1], codes[0])
	}
	if codes[0] == first {
		t.Fatalf("two outbox messages mailed the same code %s", first)
	}
	wantRedirect(t, "the redelivered code", b.submitCode(token, codes[0]), "/tickets/9")
}

// TestDeriveCode: derived codes are well formed, stable for the same
// inputs, different for different messages, and evenly spread.
func TestDeriveCode(t *testing.T) {
	key := []byte("a test key of thirty-two bytes!!")
	if deriveCode(key, "m-1", "c-1") != deriveCode(key, "m-1", "c-1") {
		t.Fatal("the same message gave two codes")
	}
	const n = 10000
	counts := map[byte]int{}
	seen := map[string]bool{}
	for i := range n {
		c := deriveCode(key, "m-"+strconv.Itoa(i), "c-1")
		if _, ok := NormalizeCode(c); !ok {
			t.Fatalf("deriveCode = %q: not a code", c)
		}
		seen[c] = true
		for j := 0; j < len(c); j++ {
			counts[c[j]]++
		}
	}
	if len(seen) < n-1 {
		t.Fatalf("%d distinct codes for %d messages", len(seen), n)
	}
	// The chi-square bound of TestNewCode, over all positions.
	k := len(codeAlphabet)
	want := float64(n*CodeLength) / float64(k)
	chi := 0.0
	for i := 0; i < k; i++ {
		d := float64(counts[codeAlphabet[i]]) - want
		chi += d * d / want
	}
	if chi > 150 {
		t.Fatalf("chi-square %.1f over %d characters: not uniform", chi, k)
	}
}

// TestCodeDeliveryReportsNothingSent: a code job for an address that is
// no contact sends nothing and says so to the outbox, whose concurrency
// would otherwise take its microseconds for the relay's unloaded latency
// (mail.TestOutboxNothingSentIsNoSample); a job for a contact sends.
func TestCodeDeliveryReportsNothingSent(t *testing.T) {
	tp := newTestPortal(t, nil)
	for _, c := range []struct {
		email   string
		nothing bool
	}{
		{"nobody@acme.example", true},
		{jane.Email, false},
	} {
		job, _ := json.Marshal(codeJob{Workspace: "acme", Email: c.email, FlowHash: HashID(NewID())})
		ctx, report := mail.WithReport(context.Background())
		if _, err := tp.portal.deliver(ctx, storage.OutboxMessage{ID: NewID(), Kind: kindCode, Payload: job, Attempts: 1}); err != nil {
			t.Fatalf("%s: %v", c.email, err)
		}
		if report.NothingSent() != c.nothing {
			t.Fatalf("%s: the delivery reported nothing sent: %v, want %v", c.email, report.NothingSent(), c.nothing)
		}
	}
}

// TestReleasedCodeCountsItsSends: a code message handed back at a stop
// before its delivery began comes back with Attempts 2, as a redelivery
// after a crash does; unlike that one, it counts against the send limits.
func TestReleasedCodeCountsItsSends(t *testing.T) {
	tp := newTestPortal(t, func(p *Portal) { p.Limits = Limits{SendsPerEmail: 1} })
	deliver := func(attempts int, lastError string) (sent bool) {
		t.Helper()
		job, _ := json.Marshal(codeJob{Workspace: "acme", Email: jane.Email, FlowHash: HashID(NewID())})
		n := tp.mail.count()
		if _, err := tp.portal.deliver(context.Background(), storage.OutboxMessage{ID: NewID(), Kind: kindCode, Payload: job, Attempts: attempts, LastError: lastError}); err != nil {
			t.Fatal(err)
		}
		return tp.mail.count() > n
	}
	if !deliver(1, "") {
		t.Fatal("the first code was not sent")
	}
	if deliver(2, mail.Released) {
		t.Fatal("a released code went out past SendsPerEmail 1")
	}
	if !deliver(2, "") {
		t.Fatal("a redelivery after a crash was held by the send limit it was counted against already")
	}
}
