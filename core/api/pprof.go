package api

import (
	"net/http"
	"net/http/pprof"
)

// routePprof serves net/http/pprof's handlers under /debug/pprof/ behind
// the admin keys: profiles show event contents and cost CPU, so they are
// never open where /v1/* is not. The handlers are registered on this
// server's mux only; the package's side registration on
// http.DefaultServeMux is not served by hookbus.
func (s *Server) routePprof() {
	s.mux.Handle("GET /debug/pprof/", s.auth(http.HandlerFunc(pprof.Index), adminOnly))
	s.mux.Handle("GET /debug/pprof/cmdline", s.auth(http.HandlerFunc(pprof.Cmdline), adminOnly))
	s.mux.Handle("GET /debug/pprof/profile", s.auth(http.HandlerFunc(pprof.Profile), adminOnly))
	s.mux.Handle("GET /debug/pprof/trace", s.auth(http.HandlerFunc(pprof.Trace), adminOnly))
	// go tool pprof looks symbols up with POST.
	s.mux.Handle("GET /debug/pprof/symbol", s.auth(http.HandlerFunc(pprof.Symbol), adminOnly))
	s.mux.Handle("POST /debug/pprof/symbol", s.auth(http.HandlerFunc(pprof.Symbol), adminOnly))
}
