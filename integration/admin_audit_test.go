package integration

// signInEvents returns the audit trail's event names, newest first,
// without those every start records (config_loaded, contacts_imported
// from contacts_file).
func (g *gateway) signInEvents(query string) []string {
	g.t.Helper()
	var out []string
	for _, e := range g.auditEvents(query) {
		if e != "config_loaded" && e != "contacts_imported" {
			out = append(out, e)
		}
	}
	return out
}
