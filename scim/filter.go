package scim

import (
	"strings"

	filter "github.com/scim2/filter-parser/v2"
)

// maxFilter bounds the filter a list request may carry.
const maxFilter = 4096

// parseFilter parses a filter query parameter; an empty one matches all.
func parseFilter(s string) (filter.Expression, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	if len(s) > maxFilter {
		return nil, errorf(400, InvalidFilter, "the filter is too long")
	}
	e, err := parseSafely(func() (filter.Expression, error) { return filter.ParseFilter([]byte(s)) })
	if err != nil || e == nil {
		return nil, errorf(400, InvalidFilter, "the filter does not parse")
	}
	return e, nil
}

// parseSafely turns a panic of the parser on odd input into an error.
func parseSafely[T any](fn func() (T, error)) (v T, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = errorf(400, InvalidFilter, "the filter does not parse")
		}
	}()
	return fn()
}

// matches reports whether resource m passes filter e (nil passes all).
func matches(e filter.Expression, m resource) bool {
	switch e := e.(type) {
	case nil:
		return true
	case *filter.AttributeExpression:
		return compareAll(e, values(m, e.AttributePath))
	case *filter.LogicalExpression:
		if e.Operator == filter.AND {
			return matches(e.Left, m) && matches(e.Right, m)
		}
		return matches(e.Left, m) || matches(e.Right, m)
	case *filter.NotExpression:
		return !matches(e.Expression, m)
	case *filter.ValuePath:
		base := container(m, e.AttributePath, false)
		if base == nil {
			return false
		}
		v, _ := get(base, e.AttributePath.AttributeName)
		items, ok := v.([]any)
		if !ok {
			items = []any{v}
		}
		for _, it := range items {
			if obj, ok := it.(resource); ok && matches(e.ValueFilter, obj) {
				return true
			}
		}
	}
	return false
}

// compareAll applies an attribute expression to the values a path
// selected: ne holds when no value equals, every other operator when one
// value passes.
func compareAll(e *filter.AttributeExpression, vs []any) bool {
	switch op := strings.ToLower(string(e.Operator)); op {
	case "pr":
		for _, v := range vs {
			if s, ok := v.(string); !ok || s != "" {
				return true
			}
		}
		return false
	case "ne":
		for _, v := range vs {
			if compare("eq", caseExact(e.AttributePath), v, e.CompareValue) {
				return false
			}
		}
		return true
	default:
		for _, v := range vs {
			if compare(op, caseExact(e.AttributePath), v, e.CompareValue) {
				return true
			}
		}
		return false
	}
}

// caseExact reports whether the attribute compares case-sensitively: id
// and externalId (RFC 7643 §3.1); every other string here does not.
func caseExact(p filter.AttributePath) bool {
	if p.SubAttribute != nil || (p.URI() != "" && !isCoreURN(p.URI())) {
		return false
	}
	return strings.EqualFold(p.AttributeName, "id") || strings.EqualFold(p.AttributeName, "externalId")
}

// compare applies one operator to a value and the filter's literal.
func compare(op string, exact bool, v, lit any) bool {
	switch v := v.(type) {
	case string:
		l, ok := lit.(string)
		if !ok {
			return false
		}
		if !exact {
			v, l = strings.ToLower(v), strings.ToLower(l)
		}
		switch op {
		case "eq":
			return v == l
		case "co":
			return strings.Contains(v, l)
		case "sw":
			return strings.HasPrefix(v, l)
		case "ew":
			return strings.HasSuffix(v, l)
		case "gt":
			return v > l
		case "ge":
			return v >= l
		case "lt":
			return v < l
		case "le":
			return v <= l
		}
	case bool:
		l, ok := lit.(bool)
		if !ok {
			if s, isStr := lit.(string); isStr {
				l, ok = parseBool(s)
			}
		}
		return ok && op == "eq" && v == l
	case float64:
		l, ok := number(lit)
		if !ok {
			return false
		}
		switch op {
		case "eq":
			return v == l
		case "gt":
			return v > l
		case "ge":
			return v >= l
		case "lt":
			return v < l
		case "le":
			return v <= l
		}
	}
	return false
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case int:
		return float64(n), true
	case float64:
		return n, true
	}
	return 0, false
}

// parseBool reads "true" and "false" in any case, as Entra ID sends active.
func parseBool(s string) (bool, bool) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "true":
		return true, true
	case "false":
		return false, true
	}
	return false, false
}
