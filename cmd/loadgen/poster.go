package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// poster posts to one URL with one bearer token over a kept-alive
// connection of its own, as a browser holds one. It writes the same
// request net/http's client does, but writes it and reads its answer on
// the caller's goroutine: the Transport hands every request to a writing
// goroutine and every answer back from a reading one, and those hand-offs
// cost the load generator more CPU than the request itself, CPU parley
// would otherwise have. A poster is for one goroutine at a time.
type poster struct {
	addr string // host:port
	path string
	head []byte // the request up to Content-Length's value
	conn net.Conn
	br   *bufio.Reader
	req  []byte // the request being written, kept for the next
}

func newPoster(rawURL, token string) (*poster, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("poster: %w", err)
	}
	head := "POST " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host + "\r\nUser-Agent: Go-http-client/1.1\r\n" +
		"Authorization: Bearer " + token + "\r\nContent-Type: application/json\r\nAccept-Encoding: gzip\r\nContent-Length: "
	return &poster{addr: u.Host, path: u.Path, head: []byte(head)}, nil
}

// messagePosters makes a poster of messages for each conversation, as
// its visitor.
func messagePosters(p *parley, convs []conversation) ([]*poster, error) {
	posters := make([]*poster, len(convs))
	for i, c := range convs {
		var err error
		if posters[i], err = newPoster(p.base+"/v1/conversations/"+c.id+"/messages", c.token); err != nil {
			return nil, err
		}
	}
	return posters, nil
}

// aLongTimeAgo, as a deadline, fails a connection's blocked reads and
// writes at once.
var aLongTimeAgo = time.Unix(1, 0)

// post sends body and reads the answer to its end; an answer whose status
// is not want is an error that holds its body. After any error the
// connection is closed, and the next post opens another.
func (p *poster) post(ctx context.Context, body []byte, want int) error {
	if p.conn == nil {
		conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", p.addr)
		if err != nil {
			return fmt.Errorf("POST %s: %w", p.path, err)
		}
		p.conn, p.br = conn, bufio.NewReader(conn)
	}
	conn := p.conn
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(aLongTimeAgo) })
	keep, err := p.roundTrip(body, want)
	// A connection whose deadline the context has set is of no more use.
	if !stop() || !keep || err != nil {
		p.conn.Close()
		p.conn = nil
	}
	return err
}

// roundTrip writes the request and reads its answer, and says whether the
// server keeps the connection open.
func (p *poster) roundTrip(body []byte, want int) (keep bool, err error) {
	p.req = append(p.req[:0], p.head...)
	p.req = strconv.AppendInt(p.req, int64(len(body)), 10)
	p.req = append(p.req, "\r\n\r\n"...)
	p.req = append(p.req, body...)
	if _, err := p.conn.Write(p.req); err != nil {
		return false, fmt.Errorf("POST %s: %w", p.path, err)
	}
	resp, err := http.ReadResponse(p.br, nil)
	if err != nil {
		return false, fmt.Errorf("POST %s: %w", p.path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return false, fmt.Errorf("POST %s: %d %s", p.path, resp.StatusCode, data)
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return false, fmt.Errorf("POST %s: read answer: %w", p.path, err)
	}
	return !resp.Close, nil
}
