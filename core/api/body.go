package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/hookbus/hookbus/core/problem"
	"github.com/hookbus/hookbus/core/subscription"
)

// MaxRequestBody bounds a management request's body.
const MaxRequestBody = 1 << 20

// Page bounds of the lists.
const (
	DefaultLimit = 50
	MaxLimit     = 500
)

// object is a request body's members, decoded one by one so each problem
// names its member.
type object struct {
	members map[string]json.RawMessage
	errs    []problem.FieldError
}

// readObject reads a JSON object body of at most MaxRequestBody bytes
// whose members are all in allowed. An empty body is an empty object when
// optional. Unknown members are field errors (422), not ignored: a
// misspelt field must not be silently dropped.
func readObject(w http.ResponseWriter, r *http.Request, optional bool, allowed ...string) (*object, *problem.Problem) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && mt != "application/merge-patch+json") {
			return nil, problem.New(http.StatusUnsupportedMediaType, "Content-Type must be application/json, got "+strconv.Quote(ct))
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxRequestBody))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			w.Header().Set("Connection", "close")
			return nil, problem.New(http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is larger than %d bytes", MaxRequestBody))
		}
		return nil, problem.New(http.StatusBadRequest, "reading request body: "+err.Error())
	}
	o := &object{members: map[string]json.RawMessage{}}
	if len(bytes.TrimSpace(body)) == 0 {
		if optional {
			return o, nil
		}
		return nil, problem.New(http.StatusBadRequest, "request body is empty; send a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&o.members); err != nil || o.members == nil {
		msg := "request body must be a JSON object"
		if err != nil {
			msg += ": " + err.Error()
		}
		return nil, problem.New(http.StatusBadRequest, msg)
	}
	if dec.More() {
		return nil, problem.New(http.StatusBadRequest, "request body must be one JSON object; found more after it")
	}
	var unknown []problem.FieldError
	for _, k := range slices.Sorted(maps.Keys(o.members)) {
		if !slices.Contains(allowed, k) {
			unknown = append(unknown, problem.FieldError{Field: k, Message: "unknown member; known: " + strings.Join(allowed, ", ")})
		}
	}
	if len(unknown) > 0 {
		return nil, problem.Validation("request body has unknown members", unknown...)
	}
	return o, nil
}

// has reports whether the body gave member k (null included).
func (o *object) has(k string) bool { _, ok := o.members[k]; return ok }

// get decodes member k into dst when given, recording a field error
// saying what was expected when it does not fit; null leaves dst's zero
// value (a PATCH clears the field). It reports whether k was given.
func (o *object) get(k string, dst any, want string) bool {
	raw, ok := o.members[k]
	if !ok {
		return false
	}
	if string(bytes.TrimSpace(raw)) == "null" {
		clearValue(dst)
		return true
	}
	switch dst.(type) {
	case *map[string]string, *map[string]any:
		// json.Unmarshal adds to a map it is given: a PATCH replaces an
		// object member as a whole, so start from an empty one.
		clearValue(dst)
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		o.fail(k, "must be "+want)
	}
	return true
}

// check adds the errors of a validation, but not on a field that already
// failed to decode (its value there is not what the body said).
func (o *object) check(errs []problem.FieldError) {
	failed := map[string]bool{}
	for _, e := range o.errs {
		failed[e.Field] = true
	}
	for _, e := range errs {
		if !failed[e.Field] {
			o.errs = append(o.errs, e)
		}
	}
}

func (o *object) fail(field, msg string) {
	o.errs = append(o.errs, problem.FieldError{Field: field, Message: msg})
}

// clearValue zeroes what dst points to.
func clearValue(dst any) {
	switch d := dst.(type) {
	case *string:
		*d = ""
	case *bool:
		*d = false
	case *int:
		*d = 0
	case *float64:
		*d = 0
	case *[]string:
		*d = nil
	case *map[string]string:
		*d = nil
	case *map[string]any:
		*d = nil
	case *json.RawMessage:
		*d = nil
	}
}

// page reads ?limit= and ?cursor=.
func page(r *http.Request) (subscription.Page, *problem.Problem) {
	p := subscription.Page{Limit: DefaultLimit, Cursor: r.URL.Query().Get("cursor")}
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxLimit {
			return p, problem.New(http.StatusBadRequest, "invalid query parameter").WithErrors(
				problem.FieldError{Field: "limit", Message: fmt.Sprintf("must be an integer between 1 and %d", MaxLimit)})
		}
		p.Limit = n
	}
	return p, nil
}

// list is the answer of every list: a page and the cursor of the next
// one (null after the last).
type list[T any] struct {
	Data       []T     `json:"data"`
	NextCursor *string `json:"next_cursor"`
}

func newList[T any](data []T, next string) list[T] {
	l := list[T]{Data: data}
	if l.Data == nil {
		l.Data = []T{}
	}
	if next != "" {
		l.NextCursor = &next
	}
	return l
}
