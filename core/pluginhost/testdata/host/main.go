// Command host starts one plugin through pluginhost, prints its pid and
// waits to be killed: pluginhost's tests kill -9 it and check that the
// plugin dies too.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/hookbus/hookbus/core/pluginhost"
)

func main() {
	h := pluginhost.New(slog.New(slog.NewTextHandler(os.Stderr, nil)), nil)
	p, err := h.Start(context.Background(), "victim", pluginhost.Spec{Path: os.Args[1]})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(p.Pid())
	select {}
}
