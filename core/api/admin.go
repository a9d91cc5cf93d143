package api

import (
	"context"
	"net/http"

	"github.com/hookbus/hookbus/core/problem"
)

// Admin is the running instance as the admin routes see it.
type Admin interface {
	// AdminReload reloads the configuration. A refused reload (an invalid
	// configuration, a key only a restart can change) returns its problems
	// as invalid, with the result; err is for anything else.
	AdminReload(ctx context.Context) (result any, invalid []problem.FieldError, err error)
	// AdminStatus reports the running configuration and the last reload.
	AdminStatus() any
}

// reload serves POST /v1/admin/reload: 200 with the reload's result, 422
// with the problems when the configuration was refused (nothing of it was
// applied).
func (s *Server) reload(w http.ResponseWriter, r *http.Request) {
	res, invalid, err := s.opts.Admin.AdminReload(r.Context())
	if err != nil {
		s.opts.Logger.Error("reload", "error", err)
		problem.Write(w, problem.New(http.StatusInternalServerError, "internal error"))
		return
	}
	if len(invalid) > 0 {
		problem.Write(w, problem.New(http.StatusUnprocessableEntity, "configuration not reloaded: the running configuration goes on unchanged").WithErrors(invalid...))
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// status serves GET /v1/admin/status.
func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.opts.Admin.AdminStatus())
}
