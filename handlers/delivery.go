package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"go.uber.org/zap"

	"github.com/kdesk/portalgate/mail"
	"github.com/kdesk/portalgate/storage"
)

// The outbox side of sign-in: the request only queues a job, and the
// outbox worker looks the contact up, makes the code and mails it, so the
// answer to an email is the same whether or not it matched a contact.

// Outbox message kinds.
const kindCode = "code"

// codeJob asks the outbox worker to make and email a code. It holds no
// code: the worker derives it from the secret and the message id at every
// attempt (deriveCode), so a redelivery mails the same code and no code
// ever rests in storage except as a hash.
type codeJob struct {
	Workspace string `json:"workspace"`
	Email     string `json:"email"`
	ContactID string `json:"contact_id,omitempty"`
	// FlowHash is the id hash of the sign-in flow that asked for the code:
	// the code belongs to that flow, so wrong tries elsewhere cannot kill it.
	FlowHash string `json:"flow_hash"`
	Method   string `json:"method,omitempty"`
	ClientIP string `json:"client_ip,omitempty"`
	// Lang is the language of the page the contact asked on (BCP 47); the
	// email speaks it. Empty (jobs queued before languages): the
	// workspace's default.
	Lang string `json:"lang,omitempty"`
	// Browser names the browser that asked ("Firefox on Windows"), for the
	// email to say; "" when unknown.
	Browser string `json:"browser,omitempty"`
}

// deliver is the outbox worker's work for one message. The audit event
// of a code's delivery (code_sent, or code_not_sent) is returned, for the
// outbox to store with the message's acknowledgement: a delivery commits
// once, and a message delivered again after a crash is audited once.
func (p *Portal) deliver(ctx context.Context, m storage.OutboxMessage) ([]storage.AuditEvent, error) {
	if m.Kind == kindWebhook {
		return nil, p.deliverWebhook(ctx, m)
	}
	if m.Kind != kindCode {
		return nil, fmt.Errorf("%w: unknown outbox message kind %q", mail.ErrPermanent, m.Kind)
	}
	var job codeJob
	if err := json.Unmarshal(m.Payload, &job); err != nil {
		return nil, fmt.Errorf("%w: decoding code job: %v", mail.ErrPermanent, err)
	}
	if job.FlowHash == "" {
		return nil, fmt.Errorf("%w: code job without a sign-in flow", mail.ErrPermanent)
	}
	ws, ok := p.Workspaces[job.Workspace]
	if !ok {
		return nil, fmt.Errorf("%w: workspace %q is no longer configured", mail.ErrPermanent, job.Workspace)
	}
	rt := p.state.Load()
	if rt == nil {
		return nil, errUnavailable
	}
	ev := storage.AuditEvent{Workspace: ws.Name, Email: job.Email, ContactID: job.ContactID, Method: job.Method, ClientIP: job.ClientIP}
	contact, err := activeContact(ctx, rt.store, ws.Name, job.Email, job.ContactID)
	if errors.Is(err, storage.ErrNotFound) {
		ev.Event, ev.Reason = EventCodeNotSent, "no eligible contact"
		mail.MarkNothingSent(ctx)
		return []storage.AuditEvent{p.stamp(ev)}, nil
	}
	if err != nil {
		return nil, err
	}
	ev.ContactID = contact.ID
	keys := rt.keys[ws.Name]
	code := deriveCode(keys.mint, m.ID, contact.ID, job.FlowHash)
	// The code's life counts from when it was asked for, so a redelivery
	// does not lengthen it; storing the same code again keeps its tries.
	issued := m.CreatedAt
	if issued.IsZero() {
		issued = p.Now()
	}
	// The send limits count codes that actually go out, so anonymous
	// traffic for addresses that are no contact spends none of them; a
	// redelivery is not counted again, but a message handed back at a stop
	// or reload before its delivery began is (if an earlier attempt had
	// counted it, it counts twice: the safe side). One store call counts
	// them and, within them, stores the code.
	var limits []rateLimit
	if m.Attempts <= 1 || m.LastError == mail.Released {
		lim := p.Limits
		limits = []rateLimit{
			{key: "send/email/" + ws.Name + "/" + contact.Email, limit: lim.SendsPerEmail},
			{key: "send/ip/" + lim.clientNet(job.ClientIP), limit: lim.SendsPerIP},
			{key: "send/ws/" + ws.Name, limit: lim.SendsPerWorkspace},
		}
	}
	counted, err := rt.store.CountAndPutCode(ctx, hitsOf(p.Limits.Window, limits), ws.Name, contact.ID, job.FlowHash, storage.Code{
		Hash: keys.codeHash(contact.ID, code), IssuedAt: issued, ExpiresAt: issued.Add(ws.CodeTTL),
	})
	if err != nil {
		return nil, err
	}
	if counted.Over >= 0 {
		over := limits[counted.Over]
		ev.Event, ev.Reason = EventRateLimited, "code sends: "+over.scope()
		p.auditRefusal(ctx, rt, ev, over.key)
		mail.MarkNothingSent(ctx)
		return nil, nil
	}
	t := translator(ws.defaultLanguage())
	if tag, ok := LanguageSupported(job.Lang); ok {
		t = translator(tag)
	}
	browser := t.T("mail_unknown_browser")
	if b, os, ok := strings.Cut(job.Browser, "/"); ok {
		browser = t.T("mail_browser", "Browser", b, "OS", os)
	}
	text, html, err := ws.pages(p).codeMail(mailData{tr: t, Brand: ws.Brand, WorkspaceTitle: ws.Title, Code: FormatCode(code), CodeTTL: t.Duration(ws.CodeTTL),
		RequestedAt: issued.UTC().Format(t.T("mail_time")), Browser: browser})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", mail.ErrPermanent, err)
	}
	if err := p.Sender.Send(ctx, mail.Message{
		From:    ws.MailFrom,
		To:      contact.Email,
		Subject: t.T("mail_subject", "Workspace", ws.Title),
		Text:    text,
		HTML:    html,
	}); err != nil {
		return nil, err
	}
	ev.Event = EventCodeSent
	return []storage.AuditEvent{p.stamp(ev)}, nil
}

// giveUp audits a message the outbox will not retry.
func (p *Portal) giveUp(m storage.OutboxMessage, err error) {
	if m.Kind == kindWebhook {
		job := p.webhookGivenUp(m)
		p.Logger.Error("webhook not delivered", zap.String("id", m.ID), zap.String("webhook", job.Hook), zap.Int("attempts", m.Attempts), zap.Error(err))
		p.Audit(context.Background(), storage.AuditEvent{Workspace: job.Workspace, Event: EventWebhookFailed,
			ContactID: job.Contact, Reason: job.Hook + ": " + err.Error()})
		return
	}
	var job codeJob
	_ = json.Unmarshal(m.Payload, &job)
	p.Logger.Error("mail not delivered", zap.String("id", m.ID), zap.Int("attempts", m.Attempts), zap.Error(err))
	p.Audit(context.Background(), storage.AuditEvent{Workspace: job.Workspace, Event: EventMailFailed,
		Email: job.Email, ContactID: job.ContactID, Method: job.Method, Reason: err.Error()})
}
