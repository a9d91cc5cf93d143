package main

import (
	"bytes"
	"strings"
	"testing"
	"text/tabwriter"

	"github.com/hookbus/hookbus/core/api"
)

// TestTablesDoNotPassTerminalControls: text an application chose (its
// subscription's description) or a receiver answered (a test send's
// response) cannot move the cursor, recolour or rewrite an operator's
// terminal, nor shift a table's columns: it is printed escaped.
func TestTablesDoNotPassTerminalControls(t *testing.T) {
	evil := "ok\x1b[2J\x1b]0;owned\x07\r\tfake\u202e\u009b"
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 2, 4, 2, ' ', 0)
	subTable(api.SubscriptionJSON{ID: "sub_1", Description: evil, DisabledReason: evil})(tw)
	if err := tw.Flush(); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if strings.ContainsAny(out, "\x1b\x07\r\u202e\u009b") {
		t.Fatalf("table passes control characters through: %q", out)
	}
	if !strings.Contains(out, `ok\x1b[2J\x1b]0;owned\a\r\tfake\u202e\u009b`) {
		t.Fatalf("table does not show the text escaped: %q", out)
	}
	if got := cell("plain text, ünïcode"); got != "plain text, ünïcode" {
		t.Fatalf("cell changed plain text: %q", got)
	}
}
