// Package chat is the privacy service's client of the chat service: the
// conversations of an export, which only chat decrypts.
package chat

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/rpc"
)

// Client calls the chat service over the bus; it is an app.Chat, safe for
// concurrent use.
type Client struct{ nc *nats.Conn }

// New returns a Client calling on nc.
func New(nc *nats.Conn) *Client { return &Client{nc: nc} }

// ExportPage asks the chat service for a page of the visitor's
// conversations as p. The chat service's refusals come back as its
// *rpc.Error, for the caller to answer as they are.
func (c *Client) ExportPage(ctx context.Context, p auth.Principal, visitor string, after *chatapi.ExportCursor) (json.RawMessage, error) {
	var res json.RawMessage
	req := rpc.Request[chatapi.ExportArgs]{Principal: p, Args: chatapi.ExportArgs{Visitor: visitor, After: after}}
	if err := rpc.Call(ctx, c.nc, chatapi.ExportSubject, req, &res); err != nil {
		return nil, fmt.Errorf("read the export from chat: %w", err)
	}
	return res, nil
}
