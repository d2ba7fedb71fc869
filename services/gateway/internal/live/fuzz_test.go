package live

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
)

// pipeWriter is a ResponseWriter whose connection is one end of a
// net.Pipe: the handshake and the session run with no network.
type pipeWriter struct {
	http.ResponseWriter
	conn net.Conn
}

func (p pipeWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return p.conn, bufio.NewReadWriter(bufio.NewReader(p.conn), bufio.NewWriter(p.conn)), nil
}

// clientFrame is a WebSocket frame as a client sends it: masked, here with
// the all-zero key, which leaves the payload as it is.
func clientFrame(fin bool, opcode byte, payload []byte) []byte {
	b0 := opcode
	if fin {
		b0 |= 0x80
	}
	b := []byte{b0}
	switch n := len(payload); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n <= 0xffff:
		b = append(b, 0x80|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	b = append(b, 0, 0, 0, 0)
	return append(b, payload...)
}

// FuzzClientFrames sends any bytes as a client's WebSocket frames to a live
// session and checks that the session neither panics nor outlives the
// client: whatever the client sends, once it hangs up the hub forgets it.
func FuzzClientFrames(f *testing.F) {
	const (
		text    = 0x1
		bin     = 0x2
		cont    = 0x0
		closeOp = 0x8
		ping    = 0x9
		pong    = 0xa
	)
	join := func(frames ...[]byte) []byte {
		var b []byte
		for _, fr := range frames {
			b = append(b, fr...)
		}
		return b
	}
	f.Add(clientFrame(true, text, []byte(`{"type":"resume","after":42}`)))
	f.Add(join(clientFrame(true, ping, []byte("hi")), clientFrame(true, pong, nil), clientFrame(true, bin, []byte{0, 1, 2})))
	f.Add(join(clientFrame(false, text, []byte(`{"a":`)), clientFrame(true, cont, []byte(`1}`))))
	f.Add(clientFrame(true, text, make([]byte, readLimit+1)))
	f.Add(clientFrame(true, closeOp, []byte{0x03, 0xe8, 'b', 'y', 'e'}))
	f.Add(clientFrame(false, ping, nil))
	f.Add([]byte{0x81, 0x05, 'h', 'e', 'l', 'l', 'o'}) // unmasked
	f.Add([]byte{0x81, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})

	h := NewHub(slog.New(slog.DiscardHandler), noKeys{}, nil)
	agent := auth.Principal{Tenant: "demo", ID: "a1", Role: auth.RoleAgent}
	f.Fuzz(func(t *testing.T, frames []byte) {
		server, client := net.Pipe()
		defer client.Close()
		// The server's writes (pongs, the close frame) need a reader.
		go io.Copy(io.Discard, client)
		r := httptest.NewRequest(http.MethodGet, "/v1/stream", nil)
		r.Header.Set("Connection", "Upgrade")
		r.Header.Set("Upgrade", "websocket")
		r.Header.Set("Sec-WebSocket-Version", "13")
		r.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
		w := pipeWriter{ResponseWriter: httptest.NewRecorder(), conn: server}
		err := h.Start(t.Context(), r.Context(), agent, Limits{}, nil, func() (*websocket.Conn, error) { return websocket.Accept(w, r, nil) })
		if err != nil {
			t.Fatal(err)
		}
		client.SetWriteDeadline(time.Now().Add(5 * time.Second))
		client.Write(frames)
		client.Close()
		natstest.Until(t, 10*time.Second, fmt.Sprintf("the session ended with its client after frames %x", frames), func() bool { return h.Sessions() == 0 })
	})
}
