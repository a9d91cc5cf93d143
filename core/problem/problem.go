// Package problem writes RFC 9457 problem details: the JSON error body that
// every hookbus HTTP API answers with on failure.
//
// A *Problem is also an error, so code that parses or validates a request can
// return one and the HTTP layer can write it as is:
//
//	if err != nil {
//		problem.Write(w, problem.From(err))
//		return
//	}
package problem

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
)

// ContentType is the media type of a problem details body.
const ContentType = "application/problem+json"

// Problem is an RFC 9457 problem details object. The zero Type means
// "about:blank": the problem is described by its HTTP status alone.
type Problem struct {
	// Type is a URI reference identifying the problem type; "about:blank" when empty.
	Type string `json:"type"`
	// Title is a short summary of the problem type; the status text when empty.
	Title string `json:"title"`
	// Status is the HTTP status code.
	Status int `json:"status"`
	// Code is the stable, machine-readable name of the problem
	// ("validation_failed", "not_found", ...): clients branch on it, never
	// on Detail. Write derives it from Status when empty (CodeFor).
	Code string `json:"code"`
	// Detail explains this occurrence of the problem to a human.
	Detail string `json:"detail,omitempty"`
	// Instance is a URI reference identifying this occurrence (e.g. the request path).
	Instance string `json:"instance,omitempty"`
	// Errors lists the offending fields, when the problem is invalid input.
	Errors []FieldError `json:"errors,omitempty"`
}

// FieldError names one invalid field of a request and what is wrong with it.
type FieldError struct {
	// Field is the path of the field in the request, e.g. "[2].type" for the
	// type of the third event of a batch, or a header name such as "ce-time".
	Field string `json:"field"`
	// Message says what is wrong, e.g. "is required".
	Message string `json:"message"`
}

// The stable problem codes. Each status has one (CodeFor); a problem may
// carry a more specific one.
const (
	CodeInvalidRequest       = "invalid_request"        // 400
	CodeUnauthorized         = "unauthorized"           // 401
	CodeForbidden            = "forbidden"              // 403
	CodeNotFound             = "not_found"              // 404
	CodeMethodNotAllowed     = "method_not_allowed"     // 405
	CodeConflict             = "conflict"               // 409
	CodePayloadTooLarge      = "payload_too_large"      // 413
	CodeUnsupportedMediaType = "unsupported_media_type" // 415
	CodeValidationFailed     = "validation_failed"      // 422
	CodeRateLimited          = "rate_limited"           // 429
	CodeInternal             = "internal"               // 500
	CodeUnavailable          = "unavailable"            // 503
)

// CodeFor returns the code of a status: the list above, and for any other
// status the code of its class ("invalid_request" for 4xx, "internal" for 5xx).
func CodeFor(status int) string {
	switch status {
	case http.StatusBadRequest:
		return CodeInvalidRequest
	case http.StatusUnauthorized:
		return CodeUnauthorized
	case http.StatusForbidden:
		return CodeForbidden
	case http.StatusNotFound:
		return CodeNotFound
	case http.StatusMethodNotAllowed:
		return CodeMethodNotAllowed
	case http.StatusConflict:
		return CodeConflict
	case http.StatusRequestEntityTooLarge:
		return CodePayloadTooLarge
	case http.StatusUnsupportedMediaType:
		return CodeUnsupportedMediaType
	case http.StatusUnprocessableEntity:
		return CodeValidationFailed
	case http.StatusTooManyRequests:
		return CodeRateLimited
	case http.StatusServiceUnavailable:
		return CodeUnavailable
	}
	if status >= 400 && status < 500 {
		return CodeInvalidRequest
	}
	return CodeInternal
}

// New returns a problem of type about:blank with the given status and detail.
func New(status int, detail string) *Problem {
	return &Problem{Type: "about:blank", Title: http.StatusText(status), Status: status, Detail: detail}
}

// WithErrors appends field errors to p and returns p.
func (p *Problem) WithErrors(errs ...FieldError) *Problem {
	p.Errors = append(p.Errors, errs...)
	return p
}

// Error formats the problem on one line: status, detail and field errors.
func (p *Problem) Error() string {
	var b strings.Builder
	b.WriteString(strconv.Itoa(p.Status))
	b.WriteByte(' ')
	if p.Detail != "" {
		b.WriteString(p.Detail)
	} else {
		b.WriteString(p.title())
	}
	for i, fe := range p.Errors {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		if fe.Field != "" {
			b.WriteString(fe.Field)
			b.WriteByte(' ')
		}
		b.WriteString(fe.Message)
	}
	return b.String()
}

func (p *Problem) title() string {
	if p.Title != "" {
		return p.Title
	}
	if t := http.StatusText(p.Status); t != "" {
		return t
	}
	return "Error"
}

// From returns the *Problem in err's chain, or a 500 problem that does not
// reveal err's text (which may carry internal details) when there is none.
// From(nil) is nil.
func From(err error) *Problem {
	if err == nil {
		return nil
	}
	if p, ok := errors.AsType[*Problem](err); ok {
		return p
	}
	return New(http.StatusInternalServerError, "internal error")
}

// Validation returns a 422 validation_failed problem listing errs.
func Validation(detail string, errs ...FieldError) *Problem {
	return New(http.StatusUnprocessableEntity, detail).WithErrors(errs...)
}

// Write sends p as an application/problem+json response. Missing members are
// filled in: type about:blank, the status text as title, the status's code,
// and status 500 when p is nil or carries no valid status.
func Write(w http.ResponseWriter, p *Problem) {
	if p == nil {
		p = New(http.StatusInternalServerError, "")
	}
	out := *p
	if out.Status < 400 || out.Status > 599 {
		out.Status = http.StatusInternalServerError
	}
	if out.Type == "" {
		out.Type = "about:blank"
	}
	out.Title = out.title()
	if out.Code == "" || out.Status != p.Status {
		out.Code = CodeFor(out.Status)
	}
	body, err := json.Marshal(out)
	if err != nil { // cannot happen: every member is a string, an int or a slice of strings
		body = []byte(`{"type":"about:blank","title":"Internal Server Error","status":500,"code":"internal"}`)
		out.Status = http.StatusInternalServerError
	}
	h := w.Header()
	h.Set("Content-Type", ContentType)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(body)+1))
	w.WriteHeader(out.Status)
	_, _ = w.Write(append(body, '\n'))
}
