package handlers

import (
	"strconv"
	"strings"
)

// maxReturnPathLen bounds a return path, both as given and as normalised.
const maxReturnPathLen = 2048

// RFC 3986 character classes: unreserved characters, and every character a
// path may hold literally ("/" included); a query may also hold "?".
const (
	uriUnreserved = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
	uriPathChars  = uriUnreserved + "!$&'()*+,;=" + ":@/"
)

// SafeReturnPath checks a candidate return path (the path+query kept from the
// request that was sent to sign-in, or an admin-supplied return_to) and
// returns it normalised, ready for a Location header on this same site. The
// second result is false when raw is not a safe local path; callers then fall
// back to "/".
//
// The rules, in order:
//
//   - raw is 1 to 2048 bytes and holds no space, tab, CR, LF, NUL, DEL or
//     other ASCII control character anywhere, not even in the fragment;
//   - the fragment (from the first "#") is dropped;
//   - the path (before the first "?") starts with "/" and holds no "\",
//     so schemes ("https:", "javascript:"), "\/\/host" and relative
//     paths are refused;
//   - percent escapes must be well formed; in the path, %2F and %5C
//     (encoded "/" and "\") are refused anywhere, and in the path or query
//     encoded controls (%00-%1F, %7F) are refused;
//   - in the path, escaped unreserved characters are decoded (%2e is ".",
//     as browsers read it), and other bytes outside RFC 3986's path
//     characters are percent-encoded; in the query, bytes outside its
//     characters (a "\" among them) are percent-encoded and every valid
//     escape is kept as written;
//   - dot segments are resolved and repeated slashes collapsed (path.Clean),
//     but a trailing slash is kept, also after a final "." or ".." as
//     RFC 3986 does;
//   - a ".." that would climb above the root is refused, and so is an empty
//     segment while at the root ("//host", "/.//host", "/x/..//host"), so the
//     result never starts with "//" and never did by a trick;
//   - an empty query ("/x?") is dropped, and the result is at most 2048 bytes.
//
// "@" and ":" are ordinary path characters here: "/@evil.com" is the local
// path /@evil.com. The result starts with "/" but not "//", holds only
// printable ASCII without "\", and SafeReturnPath(result) returns it again.
func SafeReturnPath(raw string) (string, bool) {
	if raw == "" || len(raw) > maxReturnPathLen {
		return "", false
	}
	for i := 0; i < len(raw); i++ {
		if c := raw[i]; c <= ' ' || c == 0x7f {
			return "", false
		}
	}
	if i := strings.IndexByte(raw, '#'); i >= 0 {
		raw = raw[:i]
	}
	p, q, _ := strings.Cut(raw, "?")
	if !strings.HasPrefix(p, "/") {
		return "", false
	}
	p, ok := normaliseReturnEscapes(p, true)
	if !ok {
		return "", false
	}
	p, ok = resolveReturnDots(p)
	if !ok {
		return "", false
	}
	q, ok = normaliseReturnEscapes(q, false)
	if !ok {
		return "", false
	}
	out := p
	if q != "" {
		out += "?" + q
	}
	if len(out) > maxReturnPathLen {
		return "", false
	}
	return out, true
}

// normaliseReturnEscapes checks the percent escapes of a path (inPath) or query and
// percent-encodes every byte that may not appear there literally.
func normaliseReturnEscapes(s string, inPath bool) (string, bool) {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '%':
			if i+2 >= len(s) {
				return "", false
			}
			n, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
			if err != nil {
				return "", false
			}
			v := byte(n)
			switch {
			case v < ' ' || v == 0x7f:
				return "", false
			case inPath && (v == '/' || v == '\\'):
				return "", false
			case inPath && strings.IndexByte(uriUnreserved, v) >= 0:
				b.WriteByte(v)
			default:
				b.WriteString(s[i : i+3])
			}
			i += 2
		case c == '\\' && inPath:
			return "", false
		case strings.IndexByte(uriPathChars, c) >= 0:
			b.WriteByte(c)
		case c == '?' && !inPath:
			b.WriteByte(c)
		default:
			const hexDigits = "0123456789ABCDEF"
			b.WriteByte('%')
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&0x0f])
		}
	}
	return b.String(), true
}

// resolveReturnDots resolves "." and ".." in p, which starts with "/" and in
// which every "/" is a separator. It refuses to climb above the root and to
// keep an empty segment at the root: either would let a later reader see
// "//host".
func resolveReturnDots(p string) (string, bool) {
	segs := strings.Split(p[1:], "/")
	kept := make([]string, 0, len(segs))
	for i, s := range segs {
		switch s {
		case ".":
		case "..":
			if len(kept) == 0 {
				return "", false
			}
			kept = kept[:len(kept)-1]
		case "":
			if len(kept) == 0 && i != len(segs)-1 {
				return "", false
			}
		default:
			kept = append(kept, s)
		}
	}
	if len(kept) == 0 {
		return "/", true
	}
	out := "/" + strings.Join(kept, "/")
	switch segs[len(segs)-1] {
	case "", ".", "..":
		out += "/"
	}
	return out, true
}
