package module

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/kdesk/portalgate/storage"
)

// exportPage is how many events one store call reads during an export;
// memory stays at one page whatever the range.
const exportPage = 1000

// exportFormats are the formats of GET audit?format=, with their media
// types.
var exportFormats = map[string]string{
	"ndjson": "application/x-ndjson",
	"csv":    "text/csv; charset=utf-8",
}

// auditCSVHeader names the columns of a CSV export, one per AuditEvent
// field.
var auditCSVHeader = []string{"id", "time", "workspace", "event", "actor", "contact_id", "email", "method", "client_ip", "user_agent", "reason", "count"}

// exportAudit writes every event matching q, newest first, to w as NDJSON
// (one AuditEvent JSON object per line) or CSV (auditCSVHeader first). It
// pages through the store's cursor, so memory does not grow with the
// range, and calls flush after each page so the caller's client sees
// progress. q.Limit is ignored. It returns how many events it wrote.
func exportAudit(ctx context.Context, trail storage.AuditTrail, q storage.AuditQuery, format string, w io.Writer, flush func()) (int, error) {
	bw := bufio.NewWriterSize(w, 64<<10)
	var write func(storage.AuditEvent) error
	var done func() error
	switch format {
	case "ndjson":
		enc := json.NewEncoder(bw)
		write = func(e storage.AuditEvent) error { return enc.Encode(e) }
		done = func() error { return nil }
	case "csv":
		cw := csv.NewWriter(bw)
		if err := cw.Write(auditCSVHeader); err != nil {
			return 0, err
		}
		row := make([]string, len(auditCSVHeader))
		write = func(e storage.AuditEvent) error {
			row[0], row[1], row[2], row[3] = e.ID, e.Time.UTC().Format(time.RFC3339Nano), e.Workspace, e.Event
			row[4], row[5], row[6], row[7] = cell(e.Actor), cell(e.ContactID), cell(e.Email), e.Method
			row[8], row[9], row[10], row[11] = cell(e.ClientIP), cell(e.UserAgent), cell(e.Reason), strconv.Itoa(e.Count)
			return cw.Write(row)
		}
		done = func() error { cw.Flush(); return cw.Error() }
	default:
		return 0, fmt.Errorf("unknown export format %q", format)
	}
	q.Limit = exportPage
	n := 0
	for {
		events, next, err := trail.Audit(ctx, q)
		if err != nil {
			return n, err
		}
		for _, e := range events {
			if err := write(e); err != nil {
				return n, err
			}
		}
		n += len(events)
		if err := done(); err != nil {
			return n, err
		}
		if err := bw.Flush(); err != nil {
			return n, err
		}
		if flush != nil {
			flush()
		}
		if next == "" || len(events) == 0 {
			return n, nil
		}
		q.Cursor = next
	}
}

// cell keeps a CSV value that a client could have chosen (an email, a
// user agent, a reason quoting one) from being read as a formula by a
// spreadsheet: a leading = + - @ tab or CR gets a ' before it.
func cell(s string) string {
	if s != "" {
		switch s[0] {
		case '=', '+', '-', '@', '\t', '\r':
			return "'" + s
		}
	}
	return s
}
