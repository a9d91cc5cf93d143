// Command notls stands for a plugin in another language that gets the
// transport wrong: it prints a handshake line but serves no TLS (or, with
// NOTLS_CERT set, puts that in the certificate field), for the tests of
// the errors hookbus shows.
package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"
)

func main() {
	dir, err := os.MkdirTemp("", "notls")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "plugin.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("1|1|unix|%s|grpc|%s\n", sock, os.Getenv("NOTLS_CERT"))
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			// Plain text where TLS is expected: answer garbage, then hang up.
			_, _ = c.Write([]byte("not tls\n"))
			_ = c.Close()
		}
	}()
	time.Sleep(time.Minute)
}
