package handlers

import (
	"net/url"
	"strings"
	"testing"
)

// openRedirectPayloads must all be refused by SafeReturnPath. Most come from
// public open-redirect lists (oauth2-proxy's testdata/openredirects.txt among
// them); each names the trick it plays.
var openRedirectPayloads = []string{
	// Not a local path at all.
	"",
	"evil.com",
	"evil.com/x",
	"./x",
	"../x",
	"?next=/x",
	"#/x",
	"@evil.com",
	"https://evil.com",
	"http://evil.com/",
	"HTTPS://evil.com",
	"http:/evil.com",
	"http:evil.com",
	"http:\\\\evil.com",
	"//user@evil.com",
	"https://portal.example@evil.com/",
	"javascript:alert(1)",
	"JaVaScRiPt:alert(1)",
	"javascript://%0aalert(1)",
	"data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
	"vbscript:msgbox(1)",
	"%2f%2fevil.com",
	"%2F%2Fevil.com",
	"%2fevil.com",
	"%5c%5cevil.com",
	"\\/\\/evil.com",
	"\\\\evil.com",
	"\\evil.com",

	// Whitespace or controls around the leading slash, which browsers strip.
	" /x",
	" //evil.com",
	"\t/x",
	"\n/x",
	"/x ",
	"/x\x00",
	"\x00//evil.com",
	"/x\x7f",

	// Scheme-relative and its spellings.
	"//evil.com",
	"///evil.com",
	"////evil.com",
	"/////evil.com/",
	"//evil.com/%2e%2e",
	"//evil.com:80#@portal.example/",
	"//evil.com:80?@portal.example/",
	"//evil%00.com",
	"//evil%E3%80%82com",
	"//;@evil.com",
	"//https://evil.com//",
	"//javascript:alert(1)",
	"///\\;@evil.com",

	// Backslashes, which browsers read as slashes.
	"/\\evil.com",
	"/\\/evil.com",
	"/\\\\evil.com",
	"/\\/\\/evil.com/",
	"/x\\y",
	"/./\\evil.com",
	"/./../../\\evil.com",
	"//evil.com\\@portal.example",

	// Encoded slashes and backslashes.
	"/%2fevil.com",
	"/%2Fevil.com",
	"/%2f%2fevil.com",
	"/%2F%2Fevil.com",
	"/%2f%2f%2fevil.com%2f%3fwww.portal.example",
	"/%2f%5c%2f%67%6f%6f%67%6c%65%2e%63%6f%6d/",
	"/%5cevil.com",
	"/%5Cevil.com",
	"/%5c%5cevil.com",
	"//%5cevil.com",
	"///%5cevil.com",
	"//%2fxevil.com",
	"/https:/%5cevil.com/",
	"/x/%2f/evil.com",
	"/x%2fy",

	// Tabs, CR, LF and other controls, raw or encoded.
	"/\t/evil.com",
	"/\t\\evil.com",
	"/\v/evil.com",
	"/\n/evil.com",
	"/\r/evil.com",
	"/\r\nSet-Cookie:x=1",
	"/\t\t/\t\t\\evil.com",
	"/%09/evil.com",
	"/%09/javascript:alert(1)",
	"//%09/evil.com",
	"///%09/evil.com",
	"/%0a/evil.com",
	"/%0d%0aSet-Cookie:x=1",
	"/%00/evil.com",
	"/%7f/evil.com",
	"/https://%09/evil.com",
	"/x?a=%0d%0aSet-Cookie:x=1",
	"/x?a=\r\n",
	"/x?a=%00",
	"/x#\t",

	// Spaces, which a Location header or a browser may trim or split on.
	"/ /evil.com",
	"/ \\evil.com",
	"/x?a=b c",

	// Dot segments that lead back to "//host".
	"/.//evil.com",
	"/..//evil.com",
	"/../evil.com",
	"/..",
	"/x/../../evil.com",
	"/x/..//evil.com",
	"/././/evil.com",
	"/%2e//evil.com",
	"/%2e%2e//evil.com",
	"/%2E%2E/%2E%2E/evil.com",
	"/x/%2e%2e/%2e%2e/evil.com",
	"/.%2e/evil.com",

	// Malformed escapes.
	"/%",
	"/%2",
	"/%zz",
	"/%%32%66evil.com",
	"/x?q=100%",
	"/x?q=%g0",
	"/%+f",
}

// TestSafeReturnPathRejects checks that every open-redirect payload is refused.
func TestSafeReturnPathRejects(t *testing.T) {
	for _, in := range openRedirectPayloads {
		if out, ok := SafeReturnPath(in); ok {
			t.Errorf("SafeReturnPath(%q) = %q, true; want refused", in, out)
		}
	}
}

// safeReturnPaths are accepted, with their normalised form.
var safeReturnPaths = []struct {
	name, in, want string
}{
	{"root", "/", "/"},
	{"path and query", "/tickets/42?tab=history", "/tickets/42?tab=history"},
	{"trailing slash kept", "/dashboard/", "/dashboard/"},
	{"dot segment", "/a/./b", "/a/b"},
	{"encoded slash in query kept", "/requests/new?type=refund&x=%2F", "/requests/new?type=refund&x=%2F"},
	{"dot-dot inside", "/a/b/../c", "/a/c"},
	{"dot-dot back to root", "/a/..", "/"},
	{"dot-dot back to root with slash", "/a/../", "/"},
	{"final dot keeps slash", "/a/b/.", "/a/b/"},
	{"final dot-dot keeps slash", "/a/b/..", "/a/"},
	{"lone dot", "/.", "/"},
	{"repeated slashes inside collapse", "/a//b///c", "/a/b/c"},
	{"repeated trailing slashes", "/a//", "/a/"},
	{"fragment dropped", "/tickets/42#reply", "/tickets/42"},
	{"fragment after query dropped", "/t?x=1#//evil.com", "/t?x=1"},
	{"fragment only", "/#x", "/"},
	{"empty query dropped", "/tickets?", "/tickets"},
	{"question mark in query kept", "/s?next=/a?b", "/s?next=/a?b"},
	{"encoded dot decoded", "/a/%2e/b", "/a/b"},
	{"encoded dot-dot decoded", "/a/b/%2E%2E/c", "/a/c"},
	{"encoded unreserved decoded", "/%7Euser/%41bc", "/~user/Abc"},
	{"other escapes kept as written", "/a%20b/%3f%23", "/a%20b/%3f%23"},
	{"at sign is a path character", "/@evil.com", "/@evil.com"},
	{"colon is a path character", "/javascript:alert(1)", "/javascript:alert(1)"},
	{"URL inside a path stays local", "/https://evil.com", "/https:/evil.com"},
	{"double-encoded slash is data", "/%252f%252fevil.com", "/%252f%252fevil.com"},
	{"overlong UTF-8 slash is data", "/%C0%AFevil.com", "/%C0%AFevil.com"},
	{"fullwidth solidus is encoded", "/\uff0f\uff0fevil.com", "/%EF%BC%8F%EF%BC%8Fevil.com"},
	{"non-ASCII encoded", "/tickets/café", "/tickets/caf%C3%A9"},
	{"brackets encoded", "/a[1]", "/a%5B1%5D"},
	{"backslash in query encoded", "/search?q=C:\\dir", "/search?q=C:%5Cdir"},
	{"encoded backslash in query kept", "/search?q=%5c", "/search?q=%5c"},
	{"quotes and angles encoded", "/a\"<b>?q=<x>", "/a%22%3Cb%3E?q=%3Cx%3E"},
	{"sub-delims kept", "/a;b=c,d!$&'()*+", "/a;b=c,d!$&'()*+"},
	{"portal auth path", "/_portal/signin", "/_portal/signin"},
}

// TestSafeReturnPathAccepts checks the normalised form of good paths.
func TestSafeReturnPathAccepts(t *testing.T) {
	for _, tc := range safeReturnPaths {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := SafeReturnPath(tc.in)
			if !ok || got != tc.want {
				t.Fatalf("SafeReturnPath(%q) = %q, %v; want %q, true", tc.in, got, ok, tc.want)
			}
			if again, ok := SafeReturnPath(got); !ok || again != got {
				t.Fatalf("SafeReturnPath(%q) = %q, %v; want it unchanged", got, again, ok)
			}
		})
	}
}

// TestSafeReturnPathLength checks the 2048-byte bound on input and output.
func TestSafeReturnPathLength(t *testing.T) {
	longest := "/" + strings.Repeat("a", maxReturnPathLen-1)
	if got, ok := SafeReturnPath(longest); !ok || got != longest {
		t.Errorf("path of %d bytes refused", len(longest))
	}
	if _, ok := SafeReturnPath(longest + "a"); ok {
		t.Errorf("path of %d bytes accepted", len(longest)+1)
	}
	// Fits as given, but not once its non-ASCII bytes are encoded.
	grows := "/" + strings.Repeat("é", 1000)
	if _, ok := SafeReturnPath(grows); ok {
		t.Errorf("path growing to %d bytes accepted", 1+6*1000)
	}
}

// FuzzSafeReturnPath checks, for any input, what an accepted result promises.
func FuzzSafeReturnPath(f *testing.F) {
	for _, in := range openRedirectPayloads {
		f.Add(in)
	}
	for _, tc := range safeReturnPaths {
		f.Add(tc.in)
	}
	base, err := url.Parse("https://portal.example/")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, ok := SafeReturnPath(in)
		if !ok {
			if out != "" {
				t.Fatalf("SafeReturnPath(%q) refused but returned %q", in, out)
			}
			return
		}
		if !strings.HasPrefix(out, "/") || strings.HasPrefix(out, "//") || strings.HasPrefix(out, "/\\") {
			t.Fatalf("SafeReturnPath(%q) = %q: not a single leading slash", in, out)
		}
		if len(out) > maxReturnPathLen {
			t.Fatalf("SafeReturnPath(%q) = %q: %d bytes", in, out, len(out))
		}
		for i := 0; i < len(out); i++ {
			if c := out[i]; c <= ' ' || c >= 0x7f || c == '\\' || c == '#' {
				t.Fatalf("SafeReturnPath(%q) = %q: byte %#x at %d", in, out, c, i)
			}
		}
		u, err := url.Parse(out)
		if err != nil {
			t.Fatalf("SafeReturnPath(%q) = %q: url.Parse: %v", in, out, err)
		}
		if u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" {
			t.Fatalf("SafeReturnPath(%q) = %q: parsed as %#v", in, out, u)
		}
		if r := base.ResolveReference(u); r.Scheme != "https" || r.Host != "portal.example" || r.User != nil {
			t.Fatalf("SafeReturnPath(%q) = %q: resolves to %s", in, out, r)
		}
		// Emailed links join the workspace URL and the path as strings.
		joined, err := url.Parse("https://portal.example" + out)
		if err != nil || joined.Scheme != "https" || joined.Host != "portal.example" || joined.User != nil {
			t.Fatalf("SafeReturnPath(%q) = %q: joined gives %v, %v", in, out, joined, err)
		}
		if again, ok := SafeReturnPath(out); !ok || again != out {
			t.Fatalf("SafeReturnPath(%q) = %q, %v; want %q again", out, again, ok, out)
		}
	})
}
