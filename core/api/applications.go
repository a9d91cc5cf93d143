package api

import (
	"crypto/rand"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/hookbus/hookbus/core/problem"
	"github.com/hookbus/hookbus/core/subscription"
)

// ApplicationJSON is the API form of an application.
type ApplicationJSON struct {
	ID        string         `json:"id"`
	Name      string         `json:"name"`
	Metadata  map[string]any `json:"metadata"`
	CreatedAt string         `json:"created_at"`
	UpdatedAt string         `json:"updated_at"`
}

func applicationJSON(a subscription.Application) ApplicationJSON {
	md := a.Metadata
	if md == nil {
		md = map[string]any{}
	}
	return ApplicationJSON{ID: a.ID, Name: a.Name, Metadata: md, CreatedAt: timeJSON(a.Created), UpdatedAt: timeJSON(a.Updated)}
}

// timeJSON formats t as RFC 3339 in UTC, to the millisecond.
func timeJSON(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z07:00")
}

var (
	idMu      sync.Mutex
	idEntropy = ulid.Monotonic(rand.Reader, 0)
)

// newID returns prefix + a new ULID.
func newID(prefix string) string {
	idMu.Lock()
	defer idMu.Unlock()
	return prefix + ulid.MustNew(ulid.Timestamp(time.Now()), idEntropy).String()
}

func applicationNotFound(id string) *problem.Problem {
	return problem.New(http.StatusNotFound, "no application with id "+strconv.Quote(id))
}

func (s *Server) createApplication(w http.ResponseWriter, r *http.Request) {
	o, p := readObject(w, r, false, "id", "name", "metadata")
	if p != nil {
		problem.Write(w, p)
		return
	}
	var a subscription.Application
	// Absent, null or "": generated.
	if o.get("id", &a.ID, "a string"); a.ID == "" && len(o.errs) == 0 {
		a.ID = newID("app_")
	}
	o.get("name", &a.Name, "a string")
	o.get("metadata", &a.Metadata, "a JSON object")
	o.check(subscription.ValidateApplication(a))
	if len(o.errs) > 0 {
		problem.Write(w, problem.Validation("invalid application", o.errs...))
		return
	}
	created, err := s.opts.Subscriptions.CreateApplication(r.Context(), a)
	if errors.Is(err, subscription.ErrConflict) {
		problem.Write(w, problem.New(http.StatusConflict, "an application with id "+strconv.Quote(a.ID)+" exists"))
		return
	}
	if err != nil {
		s.internal(w, err)
		return
	}
	w.Header().Set("Location", "/v1/applications/"+created.ID)
	writeJSON(w, http.StatusCreated, applicationJSON(created))
}

func (s *Server) listApplications(w http.ResponseWriter, r *http.Request) {
	pg, p := page(r)
	if p != nil {
		problem.Write(w, p)
		return
	}
	apps, next, err := s.opts.Subscriptions.ListApplications(r.Context(), pg)
	if err != nil {
		s.listError(w, err)
		return
	}
	out := make([]ApplicationJSON, 0, len(apps))
	for _, a := range apps {
		out = append(out, applicationJSON(a))
	}
	writeJSON(w, http.StatusOK, newList(out, next))
}

// application loads the {app} of the path, answering 404 when it is absent.
func (s *Server) application(w http.ResponseWriter, r *http.Request) (subscription.Application, bool) {
	id := r.PathValue("app")
	a, err := s.getApplication(r, id)
	if errors.Is(err, subscription.ErrNotFound) {
		problem.Write(w, applicationNotFound(id))
		return a, false
	}
	if err != nil {
		s.internal(w, err)
		return a, false
	}
	return a, true
}

// getApplication reads application id from the store; an id that no
// application can have is ErrNotFound without asking.
func (s *Server) getApplication(r *http.Request, id string) (subscription.Application, error) {
	if !subscription.CouldBeID(id) {
		return subscription.Application{}, subscription.ErrNotFound
	}
	return s.opts.Subscriptions.GetApplication(r.Context(), id)
}

func (s *Server) getApplicationRoute(w http.ResponseWriter, r *http.Request) {
	if a, ok := s.application(w, r); ok {
		writeJSON(w, http.StatusOK, applicationJSON(a))
	}
}

// updateApplication changes the given members only (a merge): name and
// metadata (replaced as a whole; null clears it).
func (s *Server) updateApplication(w http.ResponseWriter, r *http.Request) {
	o, p := readObject(w, r, false, "id", "name", "metadata")
	if p != nil {
		problem.Write(w, p)
		return
	}
	a, ok := s.application(w, r)
	if !ok {
		return
	}
	if o.has("id") {
		var id string
		if o.get("id", &id, "a string"); id != a.ID {
			o.fail("id", "cannot be changed")
		}
	}
	o.get("name", &a.Name, "a string")
	o.get("metadata", &a.Metadata, "a JSON object")
	o.check(subscription.ValidateApplication(a))
	if len(o.errs) > 0 {
		problem.Write(w, problem.Validation("invalid application", o.errs...))
		return
	}
	updated, err := s.opts.Subscriptions.UpdateApplication(r.Context(), a)
	if errors.Is(err, subscription.ErrNotFound) {
		problem.Write(w, applicationNotFound(a.ID))
		return
	}
	if err != nil {
		s.internal(w, err)
		return
	}
	writeJSON(w, http.StatusOK, applicationJSON(updated))
}

// deleteApplication deletes the application with its subscriptions and
// tokens: 204, then 404 for a repeated DELETE (the state is the same; a
// client retrying a DELETE takes 404 as done).
func (s *Server) deleteApplication(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("app")
	err := subscription.ErrNotFound
	if subscription.CouldBeID(id) {
		err = s.opts.Subscriptions.DeleteApplication(r.Context(), id)
	}
	if errors.Is(err, subscription.ErrNotFound) {
		problem.Write(w, applicationNotFound(id))
		return
	}
	if err != nil {
		s.internal(w, err)
		return
	}
	s.tokens.forget(func(t subscription.Token) bool { return t.App == id })
	w.WriteHeader(http.StatusNoContent)
}
