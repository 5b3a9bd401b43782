package scim

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// ContentType is the media type of every SCIM answer.
const ContentType = "application/scim+json"

// ErrorSchema is the schema of SCIM error bodies.
const ErrorSchema = "urn:ietf:params:scim:api:messages:2.0:Error"

// SCIM error types (RFC 7644 §3.12), sent as scimType with a 400 or 409.
const (
	InvalidFilter = "invalidFilter"
	InvalidSyntax = "invalidSyntax"
	InvalidPath   = "invalidPath"
	InvalidValue  = "invalidValue"
	NoTarget      = "noTarget"
	Uniqueness    = "uniqueness"
	Mutability    = "mutability"
	TooMany       = "tooMany"
)

// Error is a SCIM error answer.
type Error struct {
	// Status is the HTTP status, such as 400 or 404.
	Status int
	// Type is the scimType, empty when the status says it all.
	Type string
	// Detail says what is wrong, for the operator reading the IdP's log;
	// never a token or a secret.
	Detail string
}

func (e *Error) Error() string { return strconv.Itoa(e.Status) + " " + e.Type + ": " + e.Detail }

func errorf(status int, scimType, detail string) *Error {
	return &Error{Status: status, Type: scimType, Detail: detail}
}

// WriteError answers with a SCIM error body.
func WriteError(w http.ResponseWriter, status int, scimType, detail string) {
	body := map[string]any{"schemas": []string{ErrorSchema}, "status": strconv.Itoa(status), "detail": detail}
	if scimType != "" {
		body["scimType"] = scimType
	}
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", ContentType)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
