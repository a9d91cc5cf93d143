package console

import (
	"errors"
	"net/http"
)

// statusJSON is GET /v1/admin/status.
type statusJSON struct {
	Version    int         `json:"version"`
	Hash       string      `json:"hash"`
	LoadedAt   string      `json:"loaded_at"`
	File       string      `json:"file"`
	Pipelines  []string    `json:"pipelines"`
	Sinks      []string    `json:"sinks"`
	LastReload *reloadJSON `json:"last_reload"`
}

// reloadJSON is a reload's result (POST /v1/admin/reload, and the last
// one in the status).
type reloadJSON struct {
	At      string `json:"at"`
	Trigger string `json:"trigger"`
	OK      bool   `json:"ok"`
	Version int    `json:"version"`
	Changes struct {
		Added   []string `json:"added"`
		Changed []string `json:"changed"`
		Removed []string `json:"removed"`
	} `json:"changes"`
	Errors []struct {
		File    string `json:"file"`
		Line    int    `json:"line"`
		Field   string `json:"field"`
		Message string `json:"message"`
	} `json:"errors"`
}

// statusPage shows the running configuration and the last reload.
func (c *Console) statusPage(rq *request) {
	var st statusJSON
	if err := rq.api.get(rq.r.Context(), "/v1/admin/status", nil, &st); err != nil {
		rq.fail(err)
		return
	}
	rq.render("status", page{Title: "Configuration", Nav: "status", Data: st})
}

// reload asks the API to load the configuration again.
func (c *Console) reload(rq *request) {
	var res reloadJSON
	err := rq.api.post(rq.r.Context(), "/v1/admin/reload", nil, &res)
	var ae *APIError
	switch {
	case errors.As(err, &ae) && ae.Status == http.StatusUnprocessableEntity:
		rq.redirect("/console/status", "Not reloaded: "+ae.Error())
	case err != nil:
		rq.fail(err)
	case !res.OK || len(res.Errors) > 0:
		rq.redirect("/console/status", "Reloaded, but parts could not start: see the last reload below.")
	default:
		rq.redirect("/console/status", "Reloaded: the configuration runs as version "+itoa(res.Version)+".")
	}
}
