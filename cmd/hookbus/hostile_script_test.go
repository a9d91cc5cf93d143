package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestScriptCommandsReportHostileScripts: thrown values and returned
// events that cannot be read make `hookbus script run` exit 1 and
// `hookbus test` report FAIL, with the script's file:line:col, instead of
// crashing.
func TestScriptCommandsReportHostileScripts(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"nullproto.js": "function transform(e) {\n  throw Object.create(null);\n}\n",
		"tostring.js":  "function transform(e) {\n  throw {toString() { throw 1 }};\n}\n",
		"getter.js":    "function transform(e) {\n  return {get type() { throw new Error('no type') }};\n}\n",
		"split.js":     "function transform(e) {\n  return [{type: 'a'}, {get data() { throw new Error('no data') }, type: 'b'}];\n}\n",
	} {
		file := writeFile(t, dir, name, body)
		writeFile(t, dir, strings.TrimSuffix(name, ".js")+".cases.json", `[{"name": "hostile", "event": {"type": "t"}, "expect_filtered": true}]`)

		_, stderr, code := runExit(t, `{"id":"e1","type":"t"}`, "script", "run", file, "--event", "-")
		if code != 1 || !strings.Contains(stderr, name+":2:") || strings.Contains(stderr, "panic") {
			t.Errorf("script run %s: exit %d, stderr:\n%s", name, code, stderr)
		}
		out, stderr, code := runExit(t, "", "test", file)
		if code != 1 || !strings.Contains(out, "FAIL "+filepath.Join(dir, name)+": hostile: ") || !strings.Contains(out, name+":2:") || strings.Contains(stderr, "panic") {
			t.Errorf("test %s: exit %d, out:\n%s\nstderr:\n%s", name, code, out, stderr)
		}
	}
}
