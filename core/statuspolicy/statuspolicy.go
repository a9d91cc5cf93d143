// Package statuspolicy says which HTTP answers of a receiver are retried
// and which are permanent failures. The webhook sink and the
// subscriptions sink share it: a sink's `retry_on` and `permanent_on`
// keys, and a subscription's members of the same names, are Lists.
//
// A List holds status codes (400 to 599) and the classes "4xx" and "5xx".
// An answer is judged by the most precise entry that names it: an exact
// code in either list wins over a class in either list, and an answer
// neither names follows the default rule (Default). 2xx answers are
// always delivered and 3xx answers always permanent (a redirect is never
// followed): the lists cannot name them.
package statuspolicy

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/hookbus/hookbus/sdk"
)

// MaxEntries bounds the length of each list.
const MaxEntries = 64

// Verdict is what a policy makes of a status code.
type Verdict int

// The verdicts.
const (
	// Unlisted: neither list names the code; the default rule applies.
	Unlisted Verdict = iota
	// Retry: the attempt failed and is tried again on the schedule.
	Retry
	// Permanent: the delivery is dead-lettered at once.
	Permanent
)

// Entry is one item of a List: a status code (Code) or a class (Class,
// 4 for "4xx", 5 for "5xx"; Code 0).
type Entry struct {
	Code  int
	Class int
}

// String is the entry as configured: "503" or "5xx".
func (e Entry) String() string {
	if e.Class != 0 {
		return strconv.Itoa(e.Class) + "xx"
	}
	return strconv.Itoa(e.Code)
}

// MarshalJSON writes a code as a number and a class as a string.
func (e Entry) MarshalJSON() ([]byte, error) {
	if e.Class != 0 {
		return json.Marshal(e.String())
	}
	return json.Marshal(e.Code)
}

// matches tells whether e names code.
func (e Entry) matches(code int) bool {
	if e.Class != 0 {
		return code/100 == e.Class
	}
	return e.Code == code
}

// List is a `retry_on` or `permanent_on` list. Its JSON form is an array
// of integers (status codes) and strings ("4xx", "5xx", or a code written
// as a string, "503").
type List []Entry

// ParseEntry reads one entry from its JSON form.
func ParseEntry(raw json.RawMessage) (Entry, error) {
	var n int
	if err := json.Unmarshal(raw, &n); err == nil {
		return codeEntry(n)
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return Entry{}, fmt.Errorf(`must be a status code (400 to 599) or "4xx" or "5xx", got %s`, snippet(raw))
	}
	s = strings.ToLower(strings.TrimSpace(s))
	switch s {
	case "4xx":
		return Entry{Class: 4}, nil
	case "5xx":
		return Entry{Class: 5}, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return Entry{}, fmt.Errorf(`must be a status code (400 to 599) or "4xx" or "5xx", got %q`, s)
	}
	return codeEntry(n)
}

func codeEntry(n int) (Entry, error) {
	if n < 400 || n > 599 {
		return Entry{}, fmt.Errorf("status %d cannot be listed: only 400 to 599 (2xx is always delivered, a 3xx redirect is never followed)", n)
	}
	return Entry{Code: n}, nil
}

func snippet(raw json.RawMessage) string {
	s := string(raw)
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return s
}

// UnmarshalJSON reads a list. A bad item's error is a *sdk.ConfigError
// whose Field is its index ("[2]"), for the caller to put after the key.
func (l *List) UnmarshalJSON(b []byte) error {
	var items []json.RawMessage
	if err := json.Unmarshal(b, &items); err != nil {
		return &sdk.ConfigError{Message: `must be a list of status codes and classes, like [408, 429, "5xx"]`}
	}
	if len(items) > MaxEntries {
		return &sdk.ConfigError{Message: fmt.Sprintf("at most %d items, got %d", MaxEntries, len(items))}
	}
	out := make(List, 0, len(items))
	for i, raw := range items {
		e, err := ParseEntry(raw)
		if err != nil {
			return &sdk.ConfigError{Field: fmt.Sprintf("[%d]", i), Message: err.Error()}
		}
		out = append(out, e)
	}
	*l = out
	return nil
}

// MarshalJSON writes the list ([] for an empty or nil one).
func (l List) MarshalJSON() ([]byte, error) {
	if l == nil {
		return []byte("[]"), nil
	}
	return json.Marshal([]Entry(l))
}

// SpecSchema is the list's JSON Schema (core/spec).
func (List) SpecSchema() map[string]any {
	return map[string]any{
		"type":     "array",
		"maxItems": MaxEntries,
		"items": map[string]any{"oneOf": []any{
			map[string]any{"type": "integer", "minimum": 400, "maximum": 599},
			map[string]any{"type": "string", "pattern": "^([45]xx|[45][0-9][0-9])$"},
		}},
	}
}

// Policy is a pair of lists: the answers retried and those permanent.
// The zero value is the default rule alone.
type Policy struct {
	RetryOn     List
	PermanentOn List
}

// IsZero tells whether the policy lists nothing.
func (p Policy) IsZero() bool { return len(p.RetryOn) == 0 && len(p.PermanentOn) == 0 }

// Problem is one thing wrong with a policy: the field (prefix +
// "permanent_on[1]") and what.
type Problem struct {
	Field, Message string
}

// Check returns what is wrong with p: an entry (a code or a class) in
// both lists, named at its place in permanent_on, and an entry listed
// twice in one list. prefix goes before the field names ("" or "retry.").
func (p Policy) Check(prefix string) []Problem {
	var out []Problem
	seen := func(name string, l List) map[Entry]bool {
		m := map[Entry]bool{}
		for i, e := range l {
			if m[e] {
				out = append(out, Problem{fmt.Sprintf("%s%s[%d]", prefix, name, i), fmt.Sprintf("%s is listed twice", e)})
			}
			m[e] = true
		}
		return m
	}
	retry := seen("retry_on", p.RetryOn)
	seen("permanent_on", p.PermanentOn)
	for i, e := range p.PermanentOn {
		if retry[e] {
			out = append(out, Problem{fmt.Sprintf("%spermanent_on[%d]", prefix, i),
				fmt.Sprintf("%s is in retry_on too: an answer is either retried or permanent", e)})
		}
	}
	return out
}

// Errors is Check as *sdk.ConfigError values.
func (p Policy) Errors(prefix string) []error {
	var out []error
	for _, pr := range p.Check(prefix) {
		out = append(out, &sdk.ConfigError{Field: pr.Field, Message: pr.Message})
	}
	return out
}

// Decide is what the lists say of code: an exact code first, then a
// class, else Unlisted.
func (p Policy) Decide(code int) Verdict {
	for _, exact := range []bool{true, false} {
		for _, e := range p.RetryOn {
			if (e.Class == 0) == exact && e.matches(code) {
				return Retry
			}
		}
		for _, e := range p.PermanentOn {
			if (e.Class == 0) == exact && e.matches(code) {
				return Permanent
			}
		}
	}
	return Unlisted
}

// Default is hookbus' rule for a 4xx or 5xx answer no list names: 408
// Request Timeout, 429 Too Many Requests and every 5xx are retried; every
// other 4xx (410 Gone included) is permanent.
func Default(code int) Verdict {
	switch {
	case code == 408 || code == 429 || code >= 500 && code < 600:
		return Retry
	}
	return Permanent
}

// Judge is the verdict on a 4xx or 5xx code: the lists', else Default.
func (p Policy) Judge(code int) Verdict {
	if v := p.Decide(code); v != Unlisted {
		return v
	}
	return Default(code)
}

// Override returns over when it lists anything, else p: a subscription
// that sets either list has its own policy in place of its sink's (the
// lists are not mixed, so a code cannot end up in both).
func (p Policy) Override(over Policy) Policy {
	if over.RetryOn != nil || over.PermanentOn != nil {
		return over
	}
	return p
}
