package testenv

import (
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"
)

func TestWait(t *testing.T) {
	var n atomic.Int32
	if !Wait(5*time.Second, func() bool { return n.Add(1) >= 3 }) {
		t.Fatal("condition that becomes true was not seen")
	}
	if Wait(30*time.Millisecond, func() bool { return false }) {
		t.Fatal("a condition that never holds was reported true")
	}
}

func TestNeedServiceFindsListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	NeedService(t, ln.Addr().String()) // must neither skip nor fail
}

func TestBuildBinaryOnce(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(dir+"/go.mod", []byte("module x\n\ngo 1.26\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir+"/main.go", []byte("package main\nfunc main(){}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	a := BuildBinary(t, ".")
	b := BuildBinary(t, ".")
	if a != b {
		t.Fatalf("second build gave %s, want the first %s", b, a)
	}
	if _, err := os.Stat(a); err != nil {
		t.Fatal(err)
	}
	Cleanup()
	if _, err := os.Stat(a); !os.IsNotExist(err) {
		t.Fatalf("Cleanup left %s", a)
	}
}
