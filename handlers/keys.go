package handlers

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"unsafe"
)

// workspaceKeys are one workspace's sub-keys of the instance secret,
// derived once per config.
type workspaceKeys struct {
	// code keys the stored hashes of codes; mint derives each delivery's
	// code from its outbox message (see deriveCode).
	csrf, code, mint, link []byte
}

func deriveKeys(secret []byte, workspace string) *workspaceKeys {
	return &workspaceKeys{
		csrf: derive(secret, "csrf", workspace),
		code: derive(secret, "code", workspace),
		mint: derive(secret, "code-mint", workspace),
		link: derive(secret, "link", workspace),
	}
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

// HashID is the storage key of a random id (a session's or a flow's, as
// made by NewID): SHA-256 is enough, since the id has 256 bits of entropy.
func HashID(id string) string {
	// Read the string's bytes in place: this runs on every request.
	sum := sha256.Sum256(unsafe.Slice(unsafe.StringData(id), len(id)))
	var buf [2 * sha256.Size]byte
	hex.Encode(buf[:], sum[:])
	return string(buf[:])
}

// NewID returns 256 random bits, base64url-encoded: the form of session
// and flow ids in cookies.
func NewID() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("crypto/rand: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// idLen is the length of an id made by NewID.
const idLen = 43

// validID reports whether s looks like an id made by NewID.
func validID(s string) bool {
	if len(s) != idLen {
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
