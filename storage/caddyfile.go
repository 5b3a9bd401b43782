package storage

import (
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// DurationArg reads the single argument of the current Caddyfile
// subdirective as a positive duration such as 30s, 10m, 12h or 30d. The
// portal option and every backend's block read durations with it, so that
// they accept and reject the same words.
func DurationArg(d *caddyfile.Dispenser) (caddy.Duration, error) {
	opt := d.Val()
	var s string
	if !d.AllArgs(&s) {
		return 0, d.ArgErr()
	}
	v, err := caddy.ParseDuration(s)
	if err != nil || v <= 0 {
		return 0, d.Errf("%s %q: want a positive duration such as 30s, 10m or 12h", opt, s)
	}
	return caddy.Duration(v), nil
}

// UnknownOption is the error for the current token, a subdirective that
// block does not have; it suggests the nearest of valid when the token
// looks like a misspelling of it.
func UnknownOption(d *caddyfile.Dispenser, block string, valid []string) error {
	opt := d.Val()
	if s := Suggest(opt, valid); s != "" {
		return d.Errf("unrecognized %s option %q; did you mean %s?", block, opt, s)
	}
	return d.Errf("unrecognized %s option %q", block, opt)
}

// Suggest returns the word of valid nearest to word, or "" when none is
// near enough to be a likely misspelling: at most two edits (a transposed
// pair counts as one) and fewer edits than half the word's length.
func Suggest(word string, valid []string) string {
	best, bestDist := "", 3
	for _, v := range valid {
		if d := editDistance(word, v); d < bestDist && 2*d < len(word) {
			best, bestDist = v, d
		}
	}
	return best
}

// editDistance is the optimal string alignment distance: insertions,
// deletions, substitutions and transpositions of adjacent bytes.
func editDistance(a, b string) int {
	// rows i-2, i-1 and i of the usual table
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
