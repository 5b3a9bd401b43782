package handlers

import (
	"bytes"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/template/parse"
	"unicode"
)

// Page skeletons. html/template spends most of a page's 100 to 170 µs in
// reflection, for output that, within one workspace, language and state
// of a flow, differs only in a few strings: the CSRF token, the contact's
// email, the code in a mail. A skeleton is a page (or mail) rendered once
// with a marker in place of each of those strings, its slots, and cut
// there; a later page of the same shape is the cuts joined with its own
// strings, which costs a few µs.
//
// A skeleton is only used where it gives exactly what the template gives:
//   - the templates use a slot only by printing it ({{.CSRF}}), testing it
//     ({{if .EmailInput}}), or passing it as a value to .T or .H: checked
//     on their parse trees when they load (slotsPrintedOnly);
//   - where they print one, html/template escapes it for HTML text or a
//     quoted attribute, never for a script, a style, a URL or a name,
//     whose filters look at the whole value: checked on the escaped trees
//     when a skeleton is built;
//   - a value holds only letters, digits and the slot's punctuation, and
//     the marker, rendered with a probe of every such character, comes out
//     unchanged wherever the page prints it;
//   - two renders with markers of different lengths cut the same, and the
//     cuts joined with the first page's values, and with values that the
//     filters of whole values refuse, give what the template gives for
//     them;
//   - no template is called in a context html/template derives a copy
//     for (the copies are not listed, so their escapers go unchecked).
// Any other page or value is rendered by the template as before.

// A slot is a per-request string of a page or mail that a skeleton leaves
// open: its field, and the punctuation a value may hold, besides letters
// and digits, for a skeleton to take it.
type slot[D any] struct {
	name  string
	punct string
	field func(*D) *string
}

// maxSlots is the most slots a page or mail has.
const maxSlots = 4

var pageSlots = []slot[pageData]{
	{"CSRF", "-_", func(d *pageData) *string { return &d.CSRF }},
	{"EmailInput", "@.-_", func(d *pageData) *string { return &d.EmailInput }},
	{"MaskedEmail", "@.-_*", func(d *pageData) *string { return &d.MaskedEmail }},
	{"SignedInAs", "@.-_", func(d *pageData) *string { return &d.SignedInAs }},
}

var mailSlots = []slot[mailData]{
	{"Code", "-", func(d *mailData) *string { return &d.Code }},
	{"RequestedAt", " ,.:-", func(d *mailData) *string { return &d.RequestedAt }},
	{"Browser", " .-", func(d *mailData) *string { return &d.Browser }},
}

// maxSkeletons bounds the shapes one template keeps; past it, new shapes
// render through the template. A workspace's pages come in a few dozen
// (languages, errors, resend waits), and a page is 6 to 8 KB: at most
// 4 MB a template.
const maxSkeletons = 512

// skeletonMarker begins every marker; cut refuses a page whose own text
// holds it.
const skeletonMarker = "pgSkel"

// skeleton is a page around its slots: parts[i] comes before the value
// of slot at[i], and the last part after them all.
type skeleton struct {
	parts []string
	at    []int
}

// skeletonKey names a shape: the translator, the brand, every other field
// but the slots (rest), and which slots are filled.
type skeletonKey struct {
	tr     *tr
	brand  *Brand
	filled int
	rest   string
}

// skeletons are one template's kept shapes.
type skeletons[D any] struct {
	slots []slot[D]
	// usable: the template uses its slots only as slotsPrintedOnly
	// allows.
	usable bool
	// keyOf is the data's key, but for which slots are filled.
	keyOf func(*D) skeletonKey
	// exec renders through the template; trees are its parse trees, as
	// html/template leaves them once it has escaped them.
	exec  func(io.Writer, D) error
	trees func() []*parse.Tree

	mu sync.RWMutex
	m  map[skeletonKey]*skeleton // nil: the shape renders through the template
}

// newSkeletons are the kept shapes of a template made of trees.
func newSkeletons[D any](slots []slot[D], trees func() []*parse.Tree, exec func(io.Writer, D) error, keyOf func(*D) skeletonKey) *skeletons[D] {
	s := &skeletons[D]{slots: slots, keyOf: keyOf, exec: exec, trees: trees}
	s.usable = s.printedOnly()
	return s
}

// printedOnly reports whether the templates use the slots only as
// slotsPrintedOnly allows.
func (s *skeletons[D]) printedOnly() bool {
	names := make([]string, len(s.slots))
	for i, sl := range s.slots {
		names[i] = sl.name
	}
	for _, t := range s.trees() {
		if t != nil && !slotsPrintedOnly(t.Root, names) {
			return false
		}
	}
	return true
}

// execute writes d as exec renders it, through a skeleton when one gives
// the same.
func (s *skeletons[D]) execute(w *bytes.Buffer, d D) error {
	if !s.usable {
		return s.exec(w, d)
	}
	var vals [maxSlots]string
	filled := 0
	for i, sl := range s.slots {
		v := *sl.field(&d)
		if !inert(v, sl.punct) {
			return s.exec(w, d)
		}
		vals[i] = v
		if v != "" {
			filled |= 1 << i
		}
	}
	k := s.keyOf(&d)
	k.filled = filled
	s.mu.RLock()
	sk, ok := s.m[k]
	full := len(s.m) >= maxSkeletons
	s.mu.RUnlock()
	if !ok && full {
		// Past the bound a shape is not built, only rendered.
		return s.exec(w, d)
	}
	if !ok {
		sk = s.build(d)
		if sk != nil && (!s.same(sk, d, &vals) || !s.same(sk, d, s.baits(&d))) {
			sk = nil
		}
		s.mu.Lock()
		if s.m == nil {
			s.m = map[skeletonKey]*skeleton{}
		}
		if len(s.m) < maxSkeletons {
			s.m[k] = sk
		}
		s.mu.Unlock()
	}
	if sk == nil {
		return s.exec(w, d)
	}
	sk.write(w, &vals)
	return nil
}

// same reports whether sk with vals in the slots is what the template
// renders for d with them: the first page of a shape, and the baits.
func (s *skeletons[D]) same(sk *skeleton, d D, vals *[maxSlots]string) bool {
	for i, sl := range s.slots {
		*sl.field(&d) = vals[i]
	}
	var a, b bytes.Buffer
	sk.write(&a, vals)
	return s.exec(&b, d) == nil && a.String() == b.String()
}

// filterBait is a value that html/template's filters of whole values
// refuse (a URL's scheme, an event attribute's name, CSS's "expression"
// and "--"): a skeleton that gives it back unfiltered is refused, should
// a filter escape the check on the trees (a template html/template
// derives for another context, which it does not list).
const filterBait = "javascript:onexpression--x"

// baits are filterBait, in each filled slot, kept to the slot's
// characters.
func (s *skeletons[D]) baits(d *D) *[maxSlots]string {
	var vals [maxSlots]string
	for i, sl := range s.slots {
		if *sl.field(d) == "" {
			continue
		}
		for _, r := range filterBait {
			if inert(string(r), sl.punct) {
				vals[i] += string(r)
			}
		}
	}
	return &vals
}

// write is the page with the slots' values.
func (sk *skeleton) write(w *bytes.Buffer, vals *[maxSlots]string) {
	for i, p := range sk.parts {
		w.WriteString(p)
		if i < len(sk.at) {
			w.WriteString(vals[sk.at[i]])
		}
	}
}

// build renders d twice with its filled slots replaced by probes of two
// marker lengths and cuts both; nil when the renders fail, a probe came
// out changed, the two cut differently, or the escaped templates print a
// slot where a skeleton cannot keep it.
func (s *skeletons[D]) build(d D) *skeleton {
	var cuts [2]*skeleton
	for round := range cuts {
		pd := d
		var probes [maxSlots]string
		for i, sl := range s.slots {
			if f := sl.field(&pd); *f != "" {
				m := skeletonMarker + strings.Repeat("Q", round+1) + strconv.Itoa(i) + "x"
				probes[i] = m + "aZ9é" + sl.punct + m
				*f = probes[i]
			}
		}
		var b bytes.Buffer
		if err := s.exec(&b, pd); err != nil {
			return nil
		}
		if cuts[round] = cut(b.String(), &probes); cuts[round] == nil {
			return nil
		}
	}
	a, b := cuts[0], cuts[1]
	if !slices.Equal(a.parts, b.parts) || !slices.Equal(a.at, b.at) || !s.printedOnly() {
		return nil
	}
	return a
}

// cut splits a page rendered with probes at them; nil when the page holds
// a marker that is not a whole probe.
func cut(s string, probes *[maxSlots]string) *skeleton {
	sk := &skeleton{}
	for {
		at := strings.Index(s, skeletonMarker)
		if at < 0 {
			sk.parts = append(sk.parts, s)
			return sk
		}
		i := -1
		for j, p := range probes {
			if p != "" && strings.HasPrefix(s[at:], p) {
				i = j
				break
			}
		}
		if i < 0 {
			return nil
		}
		sk.parts = append(sk.parts, s[:at])
		sk.at = append(sk.at, i)
		s = s[at+len(probes[i]):]
	}
}

// inert reports whether v holds only letters, digits and punct: what a
// slot's probe shows the page leaves unchanged.
func inert(v, punct string) bool {
	for _, r := range v {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) && !strings.ContainsRune(punct, r) {
			return false
		}
	}
	return true
}

// slotsPrintedOnly reports whether a template uses the fields names only
// as a skeleton keeps them: printed as they are ({{.CSRF}}, $.CSRF, with
// html/template's escapers after), tested ({{if .CSRF}}), or given as a
// value to .T or .H ({{.T "id" "Email" .MaskedEmail}}), never as the
// message id or its Count. Any other use, in a function, a comparison,
// a with, range or template call, a variable, is not.
func slotsPrintedOnly(n parse.Node, names []string) bool {
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return true
		}
		for _, c := range n.Nodes {
			if !slotsPrintedOnly(c, names) {
				return false
			}
		}
		return true
	case *parse.ActionNode:
		return printedPipe(n.Pipe, names)
	case *parse.IfNode:
		return testedPipe(n.Pipe, names) && slotsPrintedOnly(n.List, names) && slotsPrintedOnly(n.ElseList, names)
	case *parse.WithNode:
		return scopedPrintedOnly(&n.BranchNode, names)
	case *parse.RangeNode:
		return scopedPrintedOnly(&n.BranchNode, names)
	case *parse.TemplateNode:
		// A template html/template derived for another context (a
		// style, a URL, an attribute) is not among those it lists, so
		// its escapers cannot be checked.
		return !usesSlot(n.Pipe, names) && !strings.Contains(n.Name, "$htmltemplate_")
	}
	return true
}

// scopedPrintedOnly: a with or range takes no slot for its dot, and its
// branches use the slots as slotsPrintedOnly allows.
func scopedPrintedOnly(b *parse.BranchNode, names []string) bool {
	return !usesSlot(b.Pipe, names) && slotsPrintedOnly(b.List, names) && slotsPrintedOnly(b.ElseList, names)
}

// printedPipe: an action's pipeline prints a slot as it is, or passes it
// to .T or .H as a value, and then only escapes.
func printedPipe(p *parse.PipeNode, names []string) bool {
	if !usesSlot(p, names) {
		return true
	}
	if len(p.Decl) > 0 {
		return false
	}
	for _, c := range p.Cmds[1:] {
		id, ok := c.Args[0].(*parse.IdentifierNode)
		if len(c.Args) != 1 || !ok || !textEscapers[id.Ident] {
			return false
		}
	}
	args := p.Cmds[0].Args
	if len(args) == 1 {
		return isSlot(args[0], names)
	}
	f, ok := args[0].(*parse.FieldNode)
	if !ok || len(f.Ident) != 1 || (f.Ident[0] != "T" && f.Ident[0] != "H") {
		return false
	}
	// .T id name value name value …
	for i, a := range args[1:] {
		if !usesSlot(a, names) {
			continue
		}
		if i == 0 || i%2 == 1 || !isSlot(a, names) {
			return false
		}
		name, ok := args[i].(*parse.StringNode)
		if !ok || name.Text == "Count" {
			return false
		}
	}
	return true
}

// textEscapers are html/template's escapers for HTML text, RCDATA and
// attribute values: character by character, no filter of the whole value.
var textEscapers = map[string]bool{
	"_html_template_htmlescaper":    true,
	"_html_template_attrescaper":    true,
	"_html_template_rcdataescaper":  true,
	"_html_template_nospaceescaper": true,
}

// testedPipe: a condition is a slot alone or uses none.
func testedPipe(p *parse.PipeNode, names []string) bool {
	if !usesSlot(p, names) {
		return true
	}
	return len(p.Decl) == 0 && len(p.Cmds) == 1 && len(p.Cmds[0].Args) == 1 && isSlot(p.Cmds[0].Args[0], names)
}

// isSlot: n is .Name or $.Name for a slot.
func isSlot(n parse.Node, names []string) bool {
	switch n := n.(type) {
	case *parse.FieldNode:
		return len(n.Ident) == 1 && slices.Contains(names, n.Ident[0])
	case *parse.VariableNode:
		return len(n.Ident) == 2 && n.Ident[0] == "$" && slices.Contains(names, n.Ident[1])
	}
	return false
}

// usesSlot: n names a slot anywhere.
func usesSlot(n parse.Node, names []string) bool {
	switch n := n.(type) {
	case *parse.PipeNode:
		if n == nil {
			return false
		}
		for _, c := range n.Cmds {
			if usesSlot(c, names) {
				return true
			}
		}
	case *parse.CommandNode:
		for _, a := range n.Args {
			if usesSlot(a, names) {
				return true
			}
		}
	case *parse.FieldNode:
		return containsAny(names, n.Ident)
	case *parse.VariableNode:
		return containsAny(names, n.Ident)
	case *parse.ChainNode:
		return usesSlot(n.Node, names) || containsAny(names, n.Field)
	}
	return false
}

func containsAny(names, idents []string) bool {
	for _, s := range idents {
		if slices.Contains(names, s) {
			return true
		}
	}
	return false
}

// keyBuilder writes fields into a shape's key, each with its length so
// that no two shapes share a key.
type keyBuilder struct{ b []byte }

func (k *keyBuilder) str(s string) {
	k.b = strconv.AppendInt(k.b, int64(len(s)), 10)
	k.b = append(k.b, ':')
	k.b = append(k.b, s...)
}

func (k *keyBuilder) num(n int) {
	k.b = strconv.AppendInt(k.b, int64(n), 10)
	k.b = append(k.b, ';')
}

func (k *keyBuilder) flag(v bool) {
	if v {
		k.b = append(k.b, 'T')
	} else {
		k.b = append(k.b, 'F')
	}
}

// pageKey is a page's key: its translator, brand, and the other fields
// but the look (which the translator and the brand make) and the slots.
func pageKey(d *pageData) skeletonKey {
	k := keyBuilder{b: make([]byte, 0, 256)}
	k.num(len(d.Languages))
	for _, l := range d.Languages {
		k.str(l.Tag)
		k.str(l.Name)
		k.flag(l.Current)
	}
	k.str(d.WorkspaceTitle)
	k.str(d.AuthPath)
	k.str(d.Heading)
	k.str(d.Error)
	k.str(d.Notice)
	k.num(len(d.SSO))
	for _, s := range d.SSO {
		k.str(s.Name)
		k.str(s.Label)
	}
	k.flag(d.DirectoryMatch)
	k.flag(d.Personal)
	k.flag(d.ChangeEmail)
	k.str(d.CodeTTL)
	k.num(d.Wait)
	k.flag(d.MailDelayed)
	k.str(string(d.MessageHTML))
	k.flag(d.Form != nil)
	if d.Form != nil {
		k.str(d.Form.Action)
		k.str(d.Form.Label)
		k.str(d.Form.Then)
	}
	k.str(d.Message)
	k.str(d.Next)
	k.str(d.ActionURL)
	k.str(d.ActionLabel)
	return skeletonKey{tr: d.tr, brand: d.Brand, rest: string(k.b)}
}

// mailKey is a mail's key, as pageKey is a page's.
func mailKey(d *mailData) skeletonKey {
	k := keyBuilder{b: make([]byte, 0, 64)}
	k.str(d.WorkspaceTitle)
	k.str(d.CodeTTL)
	return skeletonKey{tr: d.tr, brand: d.Brand, rest: string(k.b)}
}
