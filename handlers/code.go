package handlers

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"unsafe"
)

// codeAlphabet has no look-alikes: no 0/O, no 1/I/L.
const codeAlphabet = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"

// CodeLength is the number of characters in a sign-in code.
const CodeLength = 7

// NewCode returns a random sign-in code.
func NewCode() string {
	var out [CodeLength]byte
	var buf [16]byte
	n := 0
	for n < CodeLength {
		if _, err := rand.Read(buf[:]); err != nil {
			panic("crypto/rand: " + err.Error())
		}
		for _, b := range buf {
			// Rejection sampling keeps every character equally likely.
			if int(b) >= 256-256%len(codeAlphabet) {
				continue
			}
			out[n] = codeAlphabet[int(b)%len(codeAlphabet)]
			if n++; n == CodeLength {
				break
			}
		}
	}
	return string(out[:])
}

// NormalizeCode accepts a code typed in any case, with spaces or dashes, and
// returns its canonical form, or false if it cannot be a code.
func NormalizeCode(s string) (string, bool) {
	if len(s) > 64 {
		return "", false
	}
	var b strings.Builder
	b.Grow(CodeLength)
	for _, r := range s {
		switch {
		case r == ' ' || r == '-' || r == '\t' || r == '\u00a0':
			continue
		case r >= 'a' && r <= 'z':
			r -= 'a' - 'A'
		}
		if r > 0x7f || strings.IndexByte(codeAlphabet, byte(r)) < 0 {
			return "", false
		}
		if b.Len() == CodeLength {
			return "", false
		}
		b.WriteByte(byte(r))
	}
	if b.Len() != CodeLength {
		return "", false
	}
	return b.String(), true
}

// FormatCode groups a code for reading: "ABC-DEFG".
func FormatCode(c string) string {
	if len(c) != CodeLength {
		return c
	}
	return c[:3] + "-" + c[3:]
}

// keyed returns HMAC-SHA256(key, parts joined by NUL).
func keyed(key []byte, parts ...string) []byte {
	m := hmac.New(sha256.New, key)
	for i, p := range parts {
		if i > 0 {
			m.Write([]byte{0})
		}
		m.Write([]byte(p))
	}
	return m.Sum(nil)
}

// derive returns a sub-key of the instance secret for one purpose.
func derive(secret []byte, purpose string, workspace string) []byte {
	return keyed(secret, "portalgate/v1", purpose, workspace)
}

// hashID is the storage key of a random id (session or flow): SHA-256 is
// enough, since the id has 256 bits of entropy.
func hashID(id string) string {
	// Read the string's bytes in place: this runs on every request.
	sum := sha256.Sum256(unsafe.Slice(unsafe.StringData(id), len(id)))
	var buf [2 * sha256.Size]byte
	hex.Encode(buf[:], sum[:])
	return string(buf[:])
}

// newID returns 256 random bits, base64url-encoded.
func newID() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("crypto/rand: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// validID reports whether s looks like an id made by newID.
func validID(s string) bool {
	if len(s) != 43 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// maskEmail shows enough of an address to recognise it: j***@acme.example.
func maskEmail(e string) string {
	at := strings.LastIndexByte(e, '@')
	if at < 1 {
		return "your email"
	}
	return e[:1] + strings.Repeat("*", min(at-1, 6)+1) + e[at:]
}
