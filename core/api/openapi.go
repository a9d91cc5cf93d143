package api

import (
	_ "embed"
	"encoding/json"
	"net/http"
	"strconv"
	"sync"

	"gopkg.in/yaml.v3"
)

// openAPIYAML is the OpenAPI 3.1 document of every route the server
// serves, kept beside the route table (a test holds them to each other).
//
//go:embed openapi.yaml
var openAPIYAML []byte

var openAPIJSON = sync.OnceValues(func() ([]byte, error) {
	var doc any
	if err := yaml.Unmarshal(openAPIYAML, &doc); err != nil {
		return nil, err
	}
	return json.MarshalIndent(doc, "", "  ")
})

// OpenAPI returns the OpenAPI 3.1 document as JSON.
func OpenAPI() ([]byte, error) { return openAPIJSON() }

// openAPI serves GET /v1/openapi.json. It needs no credentials: it is the
// API's public documentation and tells nothing of this instance.
func (s *Server) openAPI(w http.ResponseWriter, r *http.Request) {
	doc, err := openAPIJSON()
	if err != nil {
		s.internal(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(doc)))
	_, _ = w.Write(doc)
}
