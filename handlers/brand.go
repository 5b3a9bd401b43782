package handlers

import (
	htmltemplate "html/template"
	"math"
	"net/url"
	"strconv"
	"strings"
	"sync"
)

// A workspace's brand on the pages and in the email: its logo, and its
// accent color made readable. The accent is the operator's choice, so the
// pages derive from it the two shades they need: one that white button
// text and links on white read on at 4.5:1 (WCAG AA; the accent itself
// when it already does), and a light one for links on the dark theme's
// card.

// defaultAccent is the accent of a workspace without a brand.
const defaultAccent = "#2553c7"

// Card colors the accent must read on (layout.html).
var (
	lightCard = rgb{1, 1, 1}
	darkCard  = rgb{0x1b / 255.0, 0x21 / 255.0, 0x30 / 255.0}
)

type rgb struct{ r, g, b float64 }

func parseHex(s string) (rgb, bool) {
	s = strings.TrimPrefix(s, "#")
	if len(s) == 3 {
		s = string([]byte{s[0], s[0], s[1], s[1], s[2], s[2]})
	}
	if len(s) != 6 {
		return rgb{}, false
	}
	v, err := strconv.ParseUint(s, 16, 32)
	if err != nil {
		return rgb{}, false
	}
	return rgb{float64(v>>16&0xff) / 255, float64(v>>8&0xff) / 255, float64(v&0xff) / 255}, true
}

func (c rgb) hex() string {
	b := func(f float64) string {
		s := strconv.FormatUint(uint64(math.Round(math.Max(0, math.Min(1, f))*255)), 16)
		if len(s) == 1 {
			s = "0" + s
		}
		return s
	}
	return "#" + b(c.r) + b(c.g) + b(c.b)
}

func (c rgb) luminance() float64 {
	ch := func(f float64) float64 {
		if f <= 0.04045 {
			return f / 12.92
		}
		return math.Pow((f+0.055)/1.055, 2.4)
	}
	return 0.2126*ch(c.r) + 0.7152*ch(c.g) + 0.0722*ch(c.b)
}

// contrast is the WCAG contrast ratio of two colors.
func contrast(a, b rgb) float64 {
	la, lb := a.luminance(), b.luminance()
	if la < lb {
		la, lb = lb, la
	}
	return (la + 0.05) / (lb + 0.05)
}

func (c rgb) mix(to rgb, t float64) rgb {
	return rgb{c.r + (to.r-c.r)*t, c.g + (to.g-c.g)*t, c.b + (to.b-c.b)*t}
}

// readable moves c toward to in small steps until it reads on bg at 4.5:1.
func readable(c, bg, to rgb) rgb {
	for t := 0.0; t <= 1; t += 0.05 {
		if m := c.mix(to, t); contrast(m, bg) >= 4.6 {
			return m
		}
	}
	return to
}

// shades are the two readable shades of an accent: light is the brand's
// accent, darkened where white on it (or it on white) would not read;
// dark is the accent lightened to read on the dark theme's card.
type shades struct{ light, dark string }

// accentShades remembers the shades of each accent: finding them takes a
// few dozen contrast ratios, and every page shows them. Accents come from
// the configuration, so the map stays as small as it is.
var accentShades sync.Map // accent → shades

// shades are the brand's shades (the default accent's without a brand).
func (b *Brand) shades() shades {
	if b == nil {
		return shadesOf("")
	}
	return shadesOf(b.Accent)
}

func shadesOf(accent string) shades {
	if s, ok := accentShades.Load(accent); ok {
		return s.(shades)
	}
	light := defaultAccent
	if c, ok := parseHex(accent); ok {
		light = readable(c, lightCard, rgb{}).hex()
	}
	c, _ := parseHex(light)
	s := shades{light: light, dark: readable(c, darkCard, lightCard).hex()}
	accentShades.Store(accent, s)
	return s
}

// logoSrc is the logo for an <img src>: a data: URL this process built
// from the logo file, or the operator's http(s) URL; "" for none.
func (b *Brand) logoSrc() htmltemplate.URL {
	if b == nil {
		return ""
	}
	// The module checked the URL; data: URLs are its own.
	return htmltemplate.URL(b.LogoURL)
}

// imgSrc is the Content-Security-Policy img-src the brand's logo needs.
func (b *Brand) imgSrc() string {
	switch {
	case b == nil || b.LogoURL == "":
		return ""
	case strings.HasPrefix(b.LogoURL, "data:"):
		return "; img-src data:"
	}
	u, err := url.Parse(b.LogoURL)
	if err != nil || u.Host == "" {
		return ""
	}
	return "; img-src " + u.Scheme + "://" + u.Host
}

// look is the language and the brand as the templates see them: {{.Lang}},
// {{.Dir}}, {{.Accent}}, {{.AccentOnDark}}, {{.LogoSrc}}. They are fields,
// filled before each render, rather than methods: text/template calls a
// method through reflection that builds its func type on every call,
// several times the cost of reading a field. Lang and Dir shadow the
// translator's methods of the same names.
type look struct {
	Lang, Dir            string
	Accent, AccentOnDark string
	LogoSrc              htmltemplate.URL
}

func lookOf(t *tr, b *Brand) look {
	s := b.shades()
	return look{Lang: t.Lang(), Dir: t.Dir(), Accent: s.light, AccentOnDark: s.dark, LogoSrc: b.logoSrc()}
}
