package scim

import (
	"net/http"
	"strings"
)

func (h *Handler) serviceProviderConfig(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, resource{
		"schemas":          []any{"urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"},
		"documentationUri": "https://github.com/kdesk/portalgate#syncing-contacts-from-your-directory",
		"patch":            resource{"supported": true},
		"bulk":             resource{"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
		"filter":           resource{"supported": true, "maxResults": maxCount},
		"changePassword":   resource{"supported": false},
		"sort":             resource{"supported": false},
		"etag":             resource{"supported": true},
		"authenticationSchemes": []any{resource{
			"type": "oauthbearertoken", "name": "Bearer token", "primary": true,
			"description": "The token of the workspace's scim block, in Authorization: Bearer.",
		}},
		"meta": resource{"resourceType": "ServiceProviderConfig", "location": h.location("", "ServiceProviderConfig")},
	})
	return nil
}

func (h *Handler) resourceTypeList() []resource {
	return []resource{
		{"schemas": []any{"urn:ietf:params:scim:schemas:core:2.0:ResourceType"}, "id": "User", "name": "User",
			"endpoint": "/Users", "schema": UserSchema,
			"schemaExtensions": []any{resource{"schema": EnterpriseSchema, "required": false}},
			"meta":             resource{"resourceType": "ResourceType", "location": h.location("ResourceTypes", "User")}},
		{"schemas": []any{"urn:ietf:params:scim:schemas:core:2.0:ResourceType"}, "id": "Group", "name": "Group",
			"endpoint": "/Groups", "schema": GroupSchema,
			"meta": resource{"resourceType": "ResourceType", "location": h.location("ResourceTypes", "Group")}},
	}
}

func (h *Handler) resourceTypes(w http.ResponseWriter, r *http.Request) error {
	list(w, r, page{start: 1, count: maxCount}, h.resourceTypeList())
	return nil
}

func (h *Handler) resourceType(w http.ResponseWriter, r *http.Request) error {
	for _, rt := range h.resourceTypeList() {
		if strings.EqualFold(rt["id"].(string), r.PathValue("name")) {
			writeJSON(w, http.StatusOK, rt)
			return nil
		}
	}
	return errorf(http.StatusNotFound, "", "no such ResourceType")
}

// attr describes one attribute for the Schemas endpoint.
func attr(name, typ string, multi, required bool, uniqueness string, sub ...resource) resource {
	a := resource{"name": name, "type": typ, "multiValued": multi, "required": required,
		"caseExact": name == "id" || name == "externalId", "mutability": "readWrite", "returned": "default",
		"uniqueness": uniqueness}
	if len(sub) > 0 {
		s := make([]any, len(sub))
		for i, x := range sub {
			s[i] = x
		}
		a["subAttributes"] = s
	}
	return a
}

func (h *Handler) schemaList() []resource {
	str := func(n string) resource { return attr(n, "string", false, false, "none") }
	return []resource{
		{"id": UserSchema, "name": "User", "description": "A portal contact",
			"attributes": []any{
				attr("userName", "string", false, true, "server"),
				attr("name", "complex", false, false, "none", str("formatted"), str("givenName"), str("familyName")),
				str("displayName"),
				attr("active", "boolean", false, false, "none"),
				attr("emails", "complex", true, false, "none", str("value"), str("type"), attr("primary", "boolean", false, false, "none")),
				str("externalId"),
			},
			"meta": resource{"resourceType": "Schema", "location": h.location("Schemas", UserSchema)}},
		{"id": EnterpriseSchema, "name": "EnterpriseUser", "description": "Kept and returned as written",
			"attributes": []any{str("employeeNumber"), str("department"), str("organization")},
			"meta":       resource{"resourceType": "Schema", "location": h.location("Schemas", EnterpriseSchema)}},
		{"id": GroupSchema, "name": "Group", "description": "A directory group; the scim block's groups scope access",
			"attributes": []any{
				attr("displayName", "string", false, true, "server"),
				attr("members", "complex", true, false, "none", str("value"), str("type")),
				str("externalId"),
			},
			"meta": resource{"resourceType": "Schema", "location": h.location("Schemas", GroupSchema)}},
	}
}

func (h *Handler) schemas(w http.ResponseWriter, r *http.Request) error {
	list(w, r, page{start: 1, count: maxCount}, h.schemaList())
	return nil
}

func (h *Handler) schema(w http.ResponseWriter, r *http.Request) error {
	for _, s := range h.schemaList() {
		if strings.EqualFold(s["id"].(string), r.PathValue("urn")) {
			writeJSON(w, http.StatusOK, s)
			return nil
		}
	}
	return errorf(http.StatusNotFound, "", "no such Schema")
}
