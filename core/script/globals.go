package script

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/dop251/goja"
)

// installGlobals defines the frozen hookbus and console objects.
//
//	hookbus.log(msg, fields?)   structured log line at info level
//	hookbus.uuid()              random UUID v4
//	hookbus.now()               current time, RFC 3339 (UTC, nanoseconds)
//	hookbus.base64.encode(str)  standard base64 of the UTF-8 bytes of str
//	hookbus.base64.decode(str)  the UTF-8 string from standard (padded or not) base64; throws on bad input
//	hookbus.hmacSHA256(key, msg) lower-case hex HMAC-SHA256 of msg keyed by key (both UTF-8)
//	console.log/info/debug/warn/error(...args)  to the slog logger
func (slot *vmSlot) installGlobals() error {
	vm := slot.vm
	freeze, ok := goja.AssertFunction(vm.Get("Object").ToObject(vm).Get("freeze"))
	if !ok {
		return errors.New("Object.freeze missing")
	}
	frozen := func(o *goja.Object) (*goja.Object, error) {
		_, err := freeze(goja.Undefined(), o)
		return o, err
	}

	b64 := vm.NewObject()
	_ = b64.Set("encode", func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) })
	_ = b64.Set("decode", func(s string) string {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			b, err = base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "="))
		}
		if err != nil {
			panic(vm.NewTypeError("hookbus.base64.decode: %v", err))
		}
		return string(b)
	})
	if _, err := frozen(b64); err != nil {
		return err
	}

	hb := vm.NewObject()
	_ = hb.Set("log", func(call goja.FunctionCall) goja.Value {
		msg := call.Argument(0).String()
		attrs := slot.logAttrs()
		if f, ok := call.Argument(1).(*goja.Object); ok {
			for _, k := range f.Keys() {
				attrs = append(attrs, slog.Any(k, slot.logValue(f.Get(k))))
			}
		}
		slot.s.opts.Logger.LogAttrs(context.Background(), slog.LevelInfo, msg, attrs...)
		return goja.Undefined()
	})
	_ = hb.Set("uuid", newUUID)
	_ = hb.Set("now", func() string { return time.Now().UTC().Format(time.RFC3339Nano) })
	_ = hb.Set("base64", b64)
	_ = hb.Set("hmacSHA256", func(key, msg string) string {
		m := hmac.New(sha256.New, []byte(key))
		m.Write([]byte(msg))
		return hex.EncodeToString(m.Sum(nil))
	})
	if _, err := frozen(hb); err != nil {
		return err
	}

	console := vm.NewObject()
	for name, level := range map[string]slog.Level{
		"log": slog.LevelInfo, "info": slog.LevelInfo, "debug": slog.LevelDebug,
		"warn": slog.LevelWarn, "error": slog.LevelError,
	} {
		_ = console.Set(name, func(call goja.FunctionCall) goja.Value {
			parts := make([]string, len(call.Arguments))
			for i, a := range call.Arguments {
				parts[i] = slot.text(a)
			}
			slot.s.opts.Logger.LogAttrs(context.Background(), level, strings.Join(parts, " "), slot.logAttrs()...)
			return goja.Undefined()
		})
	}
	if _, err := frozen(console); err != nil {
		return err
	}

	global := vm.GlobalObject()
	if err := global.DefineDataProperty("hookbus", hb, goja.FLAG_FALSE, goja.FLAG_FALSE, goja.FLAG_TRUE); err != nil {
		return err
	}
	return global.DefineDataProperty("console", console, goja.FLAG_FALSE, goja.FLAG_FALSE, goja.FLAG_TRUE)
}

// logAttrs names the script and the call in progress.
func (slot *vmSlot) logAttrs() []slog.Attr {
	attrs := []slog.Attr{slog.String("script", slot.s.name)}
	for _, a := range []struct{ k, v string }{
		{"pipeline", slot.current.pipeline}, {"sink", slot.current.sink}, {"event_id", slot.current.eventID},
	} {
		if a.v != "" {
			attrs = append(attrs, slog.String(a.k, a.v))
		}
	}
	return attrs
}

// maxLogValue caps the JSON text of one logged object.
const maxLogValue = 8 << 10

// text renders a console argument: strings as they are, objects as JSON
// (cut at maxLogValue).
func (slot *vmSlot) text(v goja.Value) string {
	if o, ok := v.(*goja.Object); ok && !isFunction(v) {
		out, ok, err := encodeJSON(slot.vm, o, maxLogValue)
		switch {
		case err == errEncodeTooLarge:
			return "<object over 8 KiB>"
		case err != nil:
			return "<" + err.Error() + ">"
		case ok:
			return string(out)
		}
	}
	return v.String()
}

// logValue turns a hookbus.log field into a slog value: primitives as
// themselves, objects as JSON text.
func (slot *vmSlot) logValue(v goja.Value) any {
	if _, ok := v.(*goja.Object); ok {
		return slot.text(v)
	}
	if v == nil || goja.IsUndefined(v) || goja.IsNull(v) {
		return nil
	}
	switch x := v.Export().(type) {
	case string, bool, int64, float64:
		return x
	}
	return v.String()
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
