package module

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	"github.com/kdesk/portalgate/handlers"
	"github.com/kdesk/portalgate/storage"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "portal",
		Usage: "link|links|contacts|sessions|audit [flags]",
		Short: "Manages portalgate: sign-in links, contacts, sessions and the audit trail",
		Long: `
Talks to the portal admin API of a running Caddy (default localhost:2019; use
--address, or --config to read it from a config file, like Caddy's own
commands). Output is a table; --json prints the API's JSON instead.

  caddy portal link --workspace acme (--contact c-1001 | --email jane@acme.example) [--to /tickets/42] [--ttl 72h]
  caddy portal links list --workspace acme [--contact c-1001]
  caddy portal links revoke --workspace acme (--id LINK-ID | --contact c-1001)
  caddy portal contacts import --workspace acme contacts.json|contacts.csv
  caddy portal contacts list --workspace acme
  caddy portal sessions list --workspace acme [--contact c-1001]
  caddy portal sessions revoke --workspace acme --contact c-1001
  caddy portal sessions revoke --workspace acme --all
  caddy portal audit --workspace acme [--contact ID] [--event NAME] [--since T] [--until T] [--limit N]
  caddy portal audit export --workspace acme [--format ndjson|csv] [--contact ID] [--event NAME] [--since T] [--until T] > audit.csv

Event names (--event): ` + strings.Join(handlers.AuditEventNames, ", ") + `.
An unknown name is refused with the nearest one. Admin actions (links made
and revoked, contacts imported, changed and deleted, sessions revoked) are
audited with their actor: the admin caller's address, or its client
certificate's subject with remote admin. audit export streams the whole
filtered range (no --limit), newest first.
`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.AddCommand(linkCommand(), linksCommand(), contactsCommand(), sessionsCommand(), auditCommand())
		},
	})
}

// apiFlags are the flags every portal command has.
func apiFlags(c *cobra.Command) {
	c.Flags().String("address", "", "The admin API address (default: from --config, or localhost:2019)")
	c.Flags().StringP("config", "c", "", "Config file to read the admin address from, if --address is not used")
	c.Flags().StringP("adapter", "a", "", "Adapter of --config")
	c.Flags().StringP("workspace", "w", "", "The workspace (required)")
	c.Flags().Bool("json", false, "Print JSON instead of a table")
	_ = c.MarkFlagRequired("workspace")
}

// call sends one admin API request for the command's workspace and decodes
// the JSON answer into out (when out is not nil). An API error becomes the
// command's error.
func call(c *cobra.Command, method, sub string, header http.Header, body []byte, out any) ([]byte, error) {
	addr, _ := c.Flags().GetString("address")
	cfg, _ := c.Flags().GetString("config")
	adapter, _ := c.Flags().GetString("adapter")
	ws, _ := c.Flags().GetString("workspace")
	addr, err := caddycmd.DetermineAdminAPIAddress(addr, nil, cfg, adapter)
	if err != nil {
		return nil, err
	}
	if header == nil {
		header = http.Header{}
	}
	if body != nil && header.Get("Content-Type") == "" {
		header.Set("Content-Type", "application/json")
	}
	resp, err := caddycmd.AdminAPIRequest(addr, method, "/portal/workspaces/"+url.PathEscape(ws)+"/"+sub, header, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return nil, fmt.Errorf("decoding the admin API's answer: %w", err)
		}
	}
	return b, nil
}

func jsonOut(c *cobra.Command) bool {
	v, _ := c.Flags().GetBool("json")
	return v
}

func table(w io.Writer, header string, rows [][]string) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	_ = tw.Flush()
}

func linkCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "link --workspace W (--contact ID | --email ADDRESS) [--to PATH] [--ttl DURATION]",
		Short: "Makes a personalized sign-in link for a contact",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			contact, _ := c.Flags().GetString("contact")
			email, _ := c.Flags().GetString("email")
			to, _ := c.Flags().GetString("to")
			ttl, _ := c.Flags().GetString("ttl")
			req := map[string]string{"return_to": to, "ttl": ttl}
			if contact != "" {
				req["contact_id"] = contact
			}
			if email != "" {
				req["email"] = email
			}
			body, _ := json.Marshal(req)
			var link struct {
				ID        string    `json:"id"`
				URL       string    `json:"url"`
				ExpiresAt time.Time `json:"expires_at"`
			}
			raw, err := call(c, http.MethodPost, "links", nil, body, &link)
			if err != nil {
				return err
			}
			if jsonOut(c) {
				_, err = c.OutOrStdout().Write(raw)
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "%s\n(link %s, expires %s)\n", link.URL, link.ID, link.ExpiresAt.Format(time.RFC3339))
			return nil
		},
	}
	apiFlags(c)
	c.Flags().String("contact", "", "The contact's id (or --email)")
	c.Flags().String("email", "", "The contact's email (or --contact)")
	c.Flags().String("to", "", "The portal path to open after sign-in (default /)")
	c.Flags().String("ttl", "", "How long the link works (default: the workspace's link_ttl)")
	c.MarkFlagsOneRequired("contact", "email")
	c.MarkFlagsMutuallyExclusive("contact", "email")
	return c
}

func linksCommand() *cobra.Command {
	c := &cobra.Command{Use: "links", Short: "Lists and revokes personalized sign-in links"}
	list := &cobra.Command{
		Use:   "list --workspace W [--contact ID]",
		Short: "Lists live links, newest first",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			contact, _ := c.Flags().GetString("contact")
			var ls []linkView
			raw, err := call(c, http.MethodGet, "links?contact_id="+url.QueryEscape(contact), nil, nil, &ls)
			if err != nil {
				return err
			}
			if jsonOut(c) {
				_, err = c.OutOrStdout().Write(raw)
				return err
			}
			rows := make([][]string, len(ls))
			for i, l := range ls {
				last := "-"
				if !l.LastOpenedAt.IsZero() {
					last = l.LastOpenedAt.Format(time.RFC3339)
				}
				rows[i] = []string{l.ID, l.ContactID, l.ReturnTo, l.CreatedAt.Format(time.RFC3339), l.ExpiresAt.Format(time.RFC3339),
					l.CreatedBy, strconv.Itoa(l.Opens), last}
			}
			table(c.OutOrStdout(), "ID\tCONTACT\tRETURN TO\tCREATED\tEXPIRES\tCREATED BY\tOPENS\tLAST OPENED", rows)
			return nil
		},
	}
	apiFlags(list)
	list.Flags().String("contact", "", "Only this contact's links")
	revoke := &cobra.Command{
		Use:   "revoke --workspace W (--id ID | --contact ID)",
		Short: "Revokes one link, or every link of a contact, at once",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			id, _ := c.Flags().GetString("id")
			contact, _ := c.Flags().GetString("contact")
			sub := "links?contact_id=" + url.QueryEscape(contact)
			if id != "" {
				sub = "links/" + url.PathEscape(id)
			}
			var res struct {
				Revoked int `json:"revoked"`
			}
			raw, err := call(c, http.MethodDelete, sub, nil, nil, &res)
			if err != nil {
				return err
			}
			if jsonOut(c) {
				_, err = c.OutOrStdout().Write(raw)
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "%d links revoked\n", res.Revoked)
			return nil
		},
	}
	apiFlags(revoke)
	revoke.Flags().String("id", "", "The link's id (from links list)")
	revoke.Flags().String("contact", "", "Every link of this contact id")
	revoke.MarkFlagsOneRequired("id", "contact")
	revoke.MarkFlagsMutuallyExclusive("id", "contact")
	c.AddCommand(list, revoke)
	return c
}

type contactRow struct {
	ID          string `json:"id"`
	Email       string `json:"email"`
	Name        string `json:"name"`
	Status      string `json:"status"`
	Source      string `json:"source"`
	DirectoryID string `json:"directory_id"`
}

func contactsCommand() *cobra.Command {
	c := &cobra.Command{Use: "contacts", Short: "Imports and lists contacts"}
	imp := &cobra.Command{
		Use:   "import --workspace W [--replace [--source directory|manual]] FILE",
		Short: "Upserts contacts from a JSON array or a CSV file (by extension); nothing is imported if any record is bad",
		Long: `Upserts contacts from a JSON array or a CSV file (by extension); nothing is
imported if any record is bad.

With --replace the file is the whole of a source (--source, default
directory): every contact is written as of that source, and every contact of
that source the file leaves out is disabled and signed out, in one operation.
This is the authoritative import for scripted syncs from a directory.`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			sub := "contacts"
			if replace, _ := c.Flags().GetBool("replace"); replace {
				source, _ := c.Flags().GetString("source")
				sub += "?mode=replace&source=" + url.QueryEscape(source)
			} else if c.Flags().Changed("source") {
				return fmt.Errorf("--source goes with --replace")
			}
			b, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			h := http.Header{}
			if strings.EqualFold(filepath.Ext(args[0]), ".csv") {
				h.Set("Content-Type", "text/csv")
			}
			var res struct {
				Upserted  int  `json:"upserted"`
				Disabled  *int `json:"disabled"`
				Unchanged *int `json:"unchanged"`
			}
			raw, err := call(c, http.MethodPut, sub, h, b, &res)
			if err != nil {
				return err
			}
			if jsonOut(c) {
				_, err = c.OutOrStdout().Write(raw)
				return err
			}
			if res.Disabled != nil && res.Unchanged != nil {
				fmt.Fprintf(c.OutOrStdout(), "%d contacts upserted, %d disabled and signed out, %d unchanged\n", res.Upserted, *res.Disabled, *res.Unchanged)
				return nil
			}
			fmt.Fprintf(c.OutOrStdout(), "%d contacts imported\n", res.Upserted)
			return nil
		},
	}
	apiFlags(imp)
	imp.Flags().Bool("replace", false, "The file is the whole of --source: contacts of that source it leaves out are disabled and signed out")
	imp.Flags().String("source", storage.SourceDirectory, "With --replace: the source the file replaces (directory or manual)")
	list := &cobra.Command{
		Use:   "list --workspace W",
		Short: "Lists the contacts of a workspace",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var cs []contactRow
			raw, err := call(c, http.MethodGet, "contacts", nil, nil, &cs)
			if err != nil {
				return err
			}
			if jsonOut(c) {
				_, err = c.OutOrStdout().Write(raw)
				return err
			}
			rows := make([][]string, len(cs))
			for i, ct := range cs {
				rows[i] = []string{ct.ID, ct.Email, ct.Name, ct.Status, ct.Source, ct.DirectoryID}
			}
			table(c.OutOrStdout(), "ID\tEMAIL\tNAME\tSTATUS\tSOURCE\tDIRECTORY ID", rows)
			return nil
		},
	}
	apiFlags(list)
	c.AddCommand(imp, list)
	return c
}

func sessionsCommand() *cobra.Command {
	c := &cobra.Command{Use: "sessions", Short: "Lists and revokes sessions"}
	list := &cobra.Command{
		Use:   "list --workspace W [--contact ID]",
		Short: "Lists live sessions",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			contact, _ := c.Flags().GetString("contact")
			var ss []sessionView
			raw, err := call(c, http.MethodGet, "sessions?contact_id="+url.QueryEscape(contact), nil, nil, &ss)
			if err != nil {
				return err
			}
			if jsonOut(c) {
				_, err = c.OutOrStdout().Write(raw)
				return err
			}
			rows := make([][]string, len(ss))
			for i, s := range ss {
				rows[i] = []string{s.ContactID, s.Method, s.ClientIP, s.CreatedAt.Format(time.RFC3339), s.LastSeen.Format(time.RFC3339), s.ExpiresAt.Format(time.RFC3339)}
			}
			table(c.OutOrStdout(), "CONTACT\tMETHOD\tCLIENT IP\tSIGNED IN\tLAST SEEN\tEXPIRES", rows)
			return nil
		},
	}
	apiFlags(list)
	list.Flags().String("contact", "", "Only this contact's sessions")
	revoke := &cobra.Command{
		Use:   "revoke --workspace W (--contact ID | --all)",
		Short: "Signs a contact (or, with --all, everyone) out everywhere",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			contact, _ := c.Flags().GetString("contact")
			all, _ := c.Flags().GetBool("all")
			if (contact == "") == !all {
				return fmt.Errorf("give --contact ID or --all")
			}
			query := "sessions?contact_id=" + url.QueryEscape(contact)
			if all {
				query = "sessions?all=1"
			}
			var res struct {
				Revoked int `json:"revoked"`
			}
			raw, err := call(c, http.MethodDelete, query, nil, nil, &res)
			if err != nil {
				return err
			}
			if jsonOut(c) {
				_, err = c.OutOrStdout().Write(raw)
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "%d sessions revoked\n", res.Revoked)
			return nil
		},
	}
	apiFlags(revoke)
	revoke.Flags().String("contact", "", "The contact's id")
	revoke.Flags().Bool("all", false, "Every session of the workspace (after rotating a leaked secret)")
	c.AddCommand(list, revoke)
	return c
}

func auditCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "audit --workspace W [--contact ID] [--event NAME] [--since T] [--until T] [--limit N] [--cursor C]",
		Short: "Shows the audit trail, newest first",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if ev, _ := c.Flags().GetString("event"); ev != "" {
				if err := handlers.CheckEventName(ev); err != nil {
					return err
				}
			}
			q := url.Values{}
			for _, f := range []struct{ flag, param string }{
				{"contact", "contact_id"}, {"event", "event"}, {"since", "since"}, {"until", "until"}, {"limit", "limit"}, {"cursor", "cursor"},
			} {
				if v, _ := c.Flags().GetString(f.flag); v != "" {
					q.Set(f.param, v)
				}
			}
			var res struct {
				Events []struct {
					Time      time.Time `json:"time"`
					Event     string    `json:"event"`
					ContactID string    `json:"contact_id"`
					Email     string    `json:"email"`
					Method    string    `json:"method"`
					ClientIP  string    `json:"client_ip"`
					Actor     string    `json:"actor"`
					Reason    string    `json:"reason"`
				} `json:"events"`
				Next string `json:"next_cursor"`
			}
			raw, err := call(c, http.MethodGet, "audit?"+q.Encode(), nil, nil, &res)
			if err != nil {
				return err
			}
			if jsonOut(c) {
				_, err = c.OutOrStdout().Write(raw)
				return err
			}
			rows := make([][]string, len(res.Events))
			for i, e := range res.Events {
				rows[i] = []string{e.Time.Format(time.RFC3339), e.Event, e.ContactID, e.Email, e.Method, e.ClientIP, e.Actor, e.Reason}
			}
			table(c.OutOrStdout(), "TIME\tEVENT\tCONTACT\tEMAIL\tMETHOD\tCLIENT IP\tACTOR\tREASON", rows)
			if res.Next != "" {
				fmt.Fprintf(c.OutOrStdout(), "more: --cursor %s\n", res.Next)
			}
			return nil
		},
	}
	apiFlags(c)
	c.AddCommand(auditExportCommand())
	for _, f := range []struct{ name, usage string }{
		{"contact", "Only events of this contact id"},
		{"event", "Only this event, such as code_accepted or sso_failure"},
		{"since", "Only events at or after this RFC 3339 time"},
		{"until", "Only events before this RFC 3339 time"},
		{"limit", "At most this many events (1-1000, default 100)"},
		{"cursor", "Continue after a previous page"},
	} {
		c.Flags().String(f.name, "", f.usage)
	}
	return c
}

func auditExportCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "export --workspace W [--format ndjson|csv] [--contact ID] [--event NAME] [--since T] [--until T]",
		Short: "Writes the whole filtered audit trail, newest first, to standard output",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			format, _ := c.Flags().GetString("format")
			if _, ok := exportFormats[format]; !ok {
				return fmt.Errorf("--format %q: want ndjson or csv", format)
			}
			if ev, _ := c.Flags().GetString("event"); ev != "" {
				if err := handlers.CheckEventName(ev); err != nil {
					return err
				}
			}
			q := url.Values{"format": {format}}
			for _, f := range []struct{ flag, param string }{
				{"contact", "contact_id"}, {"event", "event"}, {"since", "since"}, {"until", "until"},
			} {
				if v, _ := c.Flags().GetString(f.flag); v != "" {
					q.Set(f.param, v)
				}
			}
			return stream(c, "audit?"+q.Encode(), c.OutOrStdout())
		},
	}
	apiFlags(c)
	_ = c.Flags().MarkHidden("json")
	c.Flags().String("format", "ndjson", "ndjson (one JSON event per line) or csv (with a header row)")
	for _, f := range []struct{ name, usage string }{
		{"contact", "Only events of this contact id"},
		{"event", "Only this event, such as code_accepted or sso_failure"},
		{"since", "Only events at or after this RFC 3339 time"},
		{"until", "Only events before this RFC 3339 time"},
	} {
		c.Flags().String(f.name, "", f.usage)
	}
	return c
}

// stream copies the answer of one admin API GET to out as it arrives. An
// answer cut short is an error, so a partial export never looks complete.
func stream(c *cobra.Command, sub string, out io.Writer) error {
	addr, _ := c.Flags().GetString("address")
	cfg, _ := c.Flags().GetString("config")
	adapter, _ := c.Flags().GetString("adapter")
	ws, _ := c.Flags().GetString("workspace")
	addr, err := caddycmd.DetermineAdminAPIAddress(addr, nil, cfg, adapter)
	if err != nil {
		return err
	}
	resp, err := caddycmd.AdminAPIRequest(addr, http.MethodGet, "/portal/workspaces/"+url.PathEscape(ws)+"/"+sub, http.Header{}, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(out, resp.Body); err != nil {
		return fmt.Errorf("the export was cut short: %w", err)
	}
	return nil
}
