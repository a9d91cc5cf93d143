package app

import (
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// overloadBody is the RFC 9457 problem a connection over the cap receives.
const overloadBody = `{"type":"about:blank","title":"Service Unavailable","status":503,` +
	`"detail":"too many concurrent connections (server.max_connections); nothing was accepted, retry later"}` + "\n"

// overloadResponse is written raw: the connection never reaches net/http,
// so a flood of clients costs no goroutine per request beyond the reject.
var overloadResponse = []byte("HTTP/1.1 503 Service Unavailable\r\n" +
	"Content-Type: application/problem+json\r\n" +
	"Retry-After: 1\r\n" +
	"Connection: close\r\n" +
	"Content-Length: " + strconv.Itoa(len(overloadBody)) + "\r\n\r\n" + overloadBody)

// maxRejecting bounds the goroutines answering 503 at once; past it, extra
// connections are closed without an answer rather than queue more work.
const maxRejecting = 64

// rejectTimeout bounds writing the 503 and draining what the client sent.
const rejectTimeout = 2 * time.Second

// limitListener caps the connections open at once. Unlike
// golang.org/x/net/netutil.LimitListener, which stops accepting (clients
// then wait in the kernel backlog with no answer), a connection over the cap
// is accepted and answered 503 with Retry-After, then closed, so a client
// knows to back off and nothing of its request is read into the queue.
type limitListener struct {
	net.Listener
	slots     chan struct{}
	rejecting chan struct{}
	log       *slog.Logger
	rejected  atomic.Int64
	counter   prometheus.Counter // connections answered 503; nil for none
	lastWarn  atomic.Int64       // unix nanoseconds of the last warning
}

func newLimitListener(ln net.Listener, limit int, log *slog.Logger) *limitListener {
	return &limitListener{Listener: ln, slots: make(chan struct{}, limit), rejecting: make(chan struct{}, maxRejecting), log: log}
}

// register exports the open connections and the rejections on reg.
func (l *limitListener) register(reg prometheus.Registerer) error {
	l.counter = prometheus.NewCounter(prometheus.CounterOpts{Name: "hookbus_http_connections_rejected_total",
		Help: "Client connections over server.max_connections, answered 503 and closed."})
	open := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "hookbus_http_connections_open",
		Help: "Client connections open now, counted against server.max_connections."}, func() float64 { return float64(len(l.slots)) })
	for _, c := range []prometheus.Collector{l.counter, open} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// Accept returns the next connection within the cap, answering those over it.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.slots <- struct{}{}:
			return &limitConn{Conn: c, release: func() { <-l.slots }}, nil
		default:
		}
		l.reject(c)
	}
}

func (l *limitListener) reject(c net.Conn) {
	n := l.rejected.Add(1)
	if l.counter != nil {
		l.counter.Inc()
	}
	// One warning per 10s at most: a flood must not flood the log too.
	now := time.Now().UnixNano()
	if last := l.lastWarn.Load(); now-last > int64(10*time.Second) && l.lastWarn.CompareAndSwap(last, now) {
		l.log.Warn("http: connection limit reached; answering 503", "max_connections", cap(l.slots), "rejected_total", n, "remote", c.RemoteAddr().String())
	}
	select {
	case l.rejecting <- struct{}{}:
	default:
		_ = c.Close()
		return
	}
	go func() {
		defer func() { <-l.rejecting }()
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(rejectTimeout))
		if _, err := c.Write(overloadResponse); err != nil {
			return
		}
		// Half-close, then read what the client already sent until it closes
		// or the deadline passes: closing with unread data makes the kernel
		// send a reset, which can destroy the 503 before the client reads it.
		if tc, ok := c.(interface{ CloseWrite() error }); ok {
			_ = tc.CloseWrite()
		}
		_, _ = io.CopyN(io.Discard, c, 1<<20)
	}()
}

// limitConn gives its slot back once, when closed.
type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// CloseWrite lets net/http half-close the connection, as it does for a bare
// TCP connection, so a response is not cut by a reset.
func (c *limitConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
